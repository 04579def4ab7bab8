from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "apps.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self):
        from apps.customers.services import DELETE_GUARDS

        from .models import Invoice, Payment

        def has_billing_history(customer):
            if (
                Invoice.all_tenants.filter(customer=customer).exists()
                or Payment.all_tenants.filter(customer=customer).exists()
            ):
                return "it has invoices or payments"
            return None

        DELETE_GUARDS.append(has_billing_history)
