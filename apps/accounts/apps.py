from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from . import operators, schema  # noqa: F401  (the operator voucher; the OpenAPI security scheme)
