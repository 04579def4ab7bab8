"""The mail app's part in white-label e-mails: the DKIM key of a tenant's mail domain hosted here, so
that its customers' e-mails can go out From the tenant's own domain, signed (apps/whitelabel/emails.py)."""

from __future__ import annotations

from apps.whitelabel.emails import DKIM_KEYS, DkimKey

from .models import MailDomain


@DKIM_KEYS.register("mail")
def hosted_domain_key(tenant_id: str, domain: str) -> DkimKey | None:
    """The key of ``domain`` when it is a mail domain of that same tenant (never another tenant's)."""
    row = (
        MailDomain.all_tenants.filter(tenant_id=tenant_id, name=domain.lower())
        .exclude(dkim_secret_pem="")
        .values_list("dkim_selector", "dkim_secret_pem")
        .first()
    )
    return DkimKey(domain=domain.lower(), selector=row[0], private_pem=row[1]) if row else None
