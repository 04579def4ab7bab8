from django.db.models import OuterRef
from rest_framework.generics import get_object_or_404

from apps.common.queries import SubqueryCount
from apps.tenancy.permissions import Grant
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from . import services
from .filters import CustomerFilter
from .models import Contact, Customer
from .serializers import ContactSerializer, CustomerSerializer


class CustomerViewSet(ResourceViewSet):
    """The tenant's clients. Reads MEMBER+; create and edit BILLING+ (or a guardian grant
    ``customers.change_customer`` on one customer); delete ADMIN+."""

    queryset = Customer.objects.all()
    serializer_class = CustomerSerializer
    input_serializers = {"create": CustomerSerializer, "update": CustomerSerializer}
    destroy_answers_object = False
    filterset_class = CustomerFilter
    search_fields = ["name", "company", "email", "billing_email", "tax_id", "phone"]
    ordering_fields = ["created_at", "name", "email", "status"]
    ordering = ["-created_at"]
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.BILLING,
        "update": Grant(Role.BILLING, "customers.change_customer"),
        "partial_update": Grant(Role.BILLING, "customers.change_customer"),
        "destroy": Role.ADMIN,
    }

    def scope_queryset(self, queryset):
        # A scalar subquery, not Count("contacts"): the page's LIMIT applies before counting, and the list's
        # COUNT(*) reads the customers alone (apps.common.queries.SubqueryCount).
        return queryset.annotate(contacts_count=SubqueryCount(Contact.objects.filter(customer=OuterRef("pk"))))

    # Answers are read again through the queryset: they carry the list's annotation (contacts_count).
    def create_resource(self, data):
        return self.current(services.customer_create(tenant=self.tenant, data=data))

    def update_resource(self, obj, data):
        return self.current(services.customer_update(customer=obj, data=data))

    def destroy_resource(self, obj):
        services.customer_delete(customer=obj)


class ContactViewSet(ResourceViewSet):
    """Contacts of one customer (``/customers/{customer_id}/contacts``); roles as for customers."""

    queryset = Contact.objects.all()
    serializer_class = ContactSerializer
    input_serializers = {"create": ContactSerializer, "update": ContactSerializer}
    destroy_answers_object = False
    ordering_fields = ["created_at", "name"]
    ordering = ["created_at"]
    filterset_fields = ["role"]
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

    def create_resource(self, data):
        return services.contact_create(customer=self.customer(), data=data)

    def update_resource(self, obj, data):
        return services.contact_update(contact=obj, data=data)

    def destroy_resource(self, obj):
        services.contact_delete(contact=obj)
