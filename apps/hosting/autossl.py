"""Hosting plans that include SSL (``"ssl": true`` in the plan's config): each new website of the
customer's account gets a certificate from the ACME CA, issued (HTTP-01 through the site's nginx) and
installed by the SSL module's jobs. Registered on ``apps.websites.services.CREATED``, so it holds
for every door a website is made through (the plan's first site, the API, the admin, the portal)."""

from __future__ import annotations

import logging

from django.conf import settings

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.ssl import services as ssl_services
from apps.websites.models import Website
from apps.websites.services import CREATED

from . import services

log = logging.getLogger(__name__)


def plan_includes_ssl(site: Website) -> bool:
    """One of the customer's live plans (the one being activated included) says ``"ssl": true``."""
    if site.customer_id is None:
        return False
    return any(a.limits.get("ssl") is True for a in services.live_accounts(site.tenant_id, site.customer_id))


@CREATED.register("hosting.auto_ssl")
def issue_for_plan_with_ssl(site: Website) -> None:
    if not getattr(settings, "MPANEL_SSL_AUTO_ISSUE", True) or not site.https or not plan_includes_ssl(site):
        return
    try:
        # In the website's transaction: the issue job is enqueued after its provisioning job, so the
        # vhost that answers the HTTP-01 challenge exists when the CA asks.
        ssl_services.certificate_issue(tenant=site.tenant, website=site, actor=audit.SYSTEM, automatic=True)
    except (InvalidInput, Conflict) as exc:  # a name no CA issues for: the site is made all the same
        log.warning("no automatic certificate for %s: %s", site.primary_domain, exc)
