from django.db.models import Count
from rest_framework.generics import get_object_or_404

from apps.tenancy.permissions import Grant
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantModelViewSet

from . import services
from .filters import CustomerFilter
from .models import Contact, Customer
from .serializers import ContactSerializer, CustomerSerializer


class CustomerViewSet(TenantModelViewSet):
    """The tenant's clients. Reads MEMBER+; create and edit BILLING+ (or a guardian grant
    ``customers.change_customer`` on one customer); delete ADMIN+."""

    queryset = Customer.objects.all()
    serializer_class = CustomerSerializer
    filterset_class = CustomerFilter
    search_fields = ["name", "company", "email", "billing_email", "tax_id", "phone"]
    ordering_fields = ["created_at", "name", "email", "status"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.BILLING,
        "update": Grant(Role.BILLING, "customers.change_customer"),
        "partial_update": Grant(Role.BILLING, "customers.change_customer"),
        "destroy": Role.ADMIN,
    }

    def scope_queryset(self, queryset):
        return queryset.annotate(contacts_count=Count("contacts"))

    def perform_create(self, serializer):
        customer = services.customer_create(tenant=self.tenant, data=serializer.validated_data)
        customer.contacts_count = 0  # the list's annotation, so the answer matches the schema
        serializer.instance = customer

    def perform_update(self, serializer):
        count = getattr(serializer.instance, "contacts_count", None)
        customer = services.customer_update(customer=serializer.instance, data=serializer.validated_data)
        customer.contacts_count = count if count is not None else customer.contacts.count()
        serializer.instance = customer

    def perform_destroy(self, instance):
        services.customer_delete(customer=instance)


class ContactViewSet(TenantModelViewSet):
    """Contacts of one customer (``/customers/{customer_id}/contacts``); roles as for customers."""

    queryset = Contact.objects.all()
    serializer_class = ContactSerializer
    ordering_fields = ["created_at", "name"]
    ordering = ["created_at"]
    filterset_fields = ["role"]
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.BILLING,
        "update": Role.BILLING,
        "partial_update": Role.BILLING,
        "destroy": Role.BILLING,
    }

    def customer(self) -> Customer:
        if not hasattr(self, "_customer"):
            self._customer = get_object_or_404(Customer.objects.all(), pk=self.kwargs["customer_pk"])
        return self._customer

    def scope_queryset(self, queryset):
        return queryset.filter(customer=self.customer())

    def perform_create(self, serializer):
        serializer.instance = services.contact_create(customer=self.customer(), data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.contact_update(contact=serializer.instance, data=serializer.validated_data)

    def perform_destroy(self, instance):
        services.contact_delete(contact=instance)
