"""The portal's part in billing's emails: each invoice email carries a signed, expiring link that opens
the invoice in the tenant's portal, with one-click pay, for a customer who is not logged in."""

from __future__ import annotations

from apps.billing.services.notifications import INVOICE_LINKS
from apps.whitelabel.selectors import portal_url

from . import signed


@INVOICE_LINKS.register("portal")
def invoice_link(invoice) -> str:
    token = signed.invoice_token(invoice)
    return portal_url(invoice.tenant, "invoice-link", token=token)  # the tenant's custom domain when it has one
