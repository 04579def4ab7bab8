import django_filters

from .models import CreditNote, Invoice, InvoiceStatus, Payment, SavedPaymentMethod, Subscription, SubscriptionStatus


class InvoiceFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=InvoiceStatus.choices)
    customer = django_filters.UUIDFilter(field_name="customer_id")
    number = django_filters.CharFilter()
    due_before = django_filters.DateFilter(field_name="due_date", lookup_expr="lt")
    due_after = django_filters.DateFilter(field_name="due_date", lookup_expr="gte")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Invoice
        fields = ["status", "customer", "currency", "number"]


class PaymentFilter(django_filters.FilterSet):
    invoice = django_filters.UUIDFilter(field_name="invoice_id")
    customer = django_filters.UUIDFilter(field_name="customer_id")

    class Meta:
        model = Payment
        fields = ["invoice", "customer", "method", "status", "currency"]


class CreditNoteFilter(django_filters.FilterSet):
    invoice = django_filters.UUIDFilter(field_name="invoice_id")
    customer = django_filters.UUIDFilter(field_name="customer_id")

    class Meta:
        model = CreditNote
        fields = ["invoice", "customer", "currency"]


class SubscriptionFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=SubscriptionStatus.choices)
    customer = django_filters.UUIDFilter(field_name="customer_id")
    product = django_filters.UUIDFilter(field_name="product_id")
    renews_before = django_filters.DateFilter(field_name="current_period_end", lookup_expr="lt")

    class Meta:
        model = Subscription
        fields = ["status", "customer", "product", "currency", "cycle", "external_ref"]


class SavedPaymentMethodFilter(django_filters.FilterSet):
    customer = django_filters.UUIDFilter(field_name="customer_id")

    class Meta:
        model = SavedPaymentMethod
        fields = ["customer", "is_default"]
