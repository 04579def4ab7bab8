from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "apps.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self):
        # Registrations: job handlers (subscription.*), the invoice-paid hook of subscriptions,
        # and the customers' delete guard.
        from . import jobs, selectors  # noqa: F401
