"""The portal's part in billing's emails: each invoice email carries a signed, expiring link that opens
the invoice in the tenant's portal, with one-click pay, for a customer who is not logged in."""

from __future__ import annotations

from django.urls import reverse

from apps.billing.services.notifications import INVOICE_LINKS

from . import signed
from .services import absolute


@INVOICE_LINKS.register("portal")
def invoice_link(invoice) -> str:
    token = signed.invoice_token(invoice)
    return absolute(reverse("portal:invoice-link", kwargs={"tenant_slug": invoice.tenant.slug, "token": token}))
