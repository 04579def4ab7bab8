from django.apps import AppConfig


class MailConfig(AppConfig):
    name = "apps.mail"
    label = "mail"
    verbose_name = "Email"

    def ready(self):
        from apps.names import claims

        from . import (
            jobs,  # noqa: F401  (job handlers)
            signing,  # noqa: F401  (DKIM keys of hosted mail domains for white-label e-mails)
        )
        from .models import MailDomain

        claims.register(claims.Holder(kind="mail_domain", model=MailDomain))
