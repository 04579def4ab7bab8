from django.apps import AppConfig


class DomainsConfig(AppConfig):
    name = "apps.domains"
    label = "domains"
    verbose_name = "Domains"

    def ready(self):
        from django.db.models import Q

        from apps.names import claims

        # Registrar job handlers; the expiry and auto-renew sweeps; the EPP driver; the ``domain``
        # product's provisioner and renewal hook.
        from . import jobs, provisioning, registrar_epp, tasks  # noqa: F401
        from .models import Domain, DomainStatus

        # Only a proven domain holds its name: an unverified registration must not block the real
        # owner (anyone can type a name), and a lapsed one is back at the registry.
        claims.register(claims.Holder(kind="domain", model=Domain,
                                      holds=Q(status=DomainStatus.ACTIVE, verified_at__isnull=False)))  # fmt: skip
