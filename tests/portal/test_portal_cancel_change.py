"""Cancel and plan change from the portal (pages and API), and the currency of a visitor's own sign-up.

- The portal API's ``POST /portal/services/:id/cancel`` and ``/change`` show billing's figures first
  (``preview: true``, computed by the same service that then applies them), apply them through
  billing's services, answer owner and billing only (technical: 403 before any lookup), another
  customer's service is a 404, a retried Idempotency-Key is answered again and applied once, and each
  is audited with the portal user as actor.
- An immediate cancel credits the unused paid days to the customer's balance, once: a retry finds the
  service cancelled (409) and credits nothing more; an unpaid period is never credited.
- The cancel page shows that credit (through ``display.money``) before it is confirmed.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.models import CreditTransaction, Invoice, Subscription, SubscriptionCharge, SubscriptionStatus
from apps.billing.services import payments, tenant_settings
from apps.billing.services.credit import credit_balance
from apps.catalog.services import product_create
from apps.common.display import money
from apps.customers.models import Customer
from apps.jobs.models import Job
from apps.portal import services as portal_services
from apps.portal.models import PortalRole
from apps.tenancy.models import Membership
from apps.tenancy.roles import Role
from apps.tenancy.scoping import tenant_scope
from tests.conftest import client_for

from .support import api_client, page_client

pytestmark = pytest.mark.django_db


def _pay(world) -> Subscription:
    """Pay the world's order invoice (a manual payment recorded by staff): the service runs."""
    with tenant_scope(world.tenant):
        invoice = Invoice.objects.get(pk=world.order.invoice_id)
        payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="bank_transfer", reference="T1")
    sub = Subscription.all_tenants.get(pk=world.subscription.pk)
    assert sub.status == SubscriptionStatus.ACTIVE and sub.billed_through >= sub.current_period_end
    return sub


def _credit(world) -> Decimal:
    return credit_balance(customer=world.customer, currency="EUR")


def _url(sub, what: str) -> str:
    return f"/api/v1/portal/services/{sub.pk}/{what}"


def _bigger_plan(world):
    with tenant_scope(world.tenant):
        return product_create(
            tenant=world.tenant,
            data={
                "name": "Web Hosting Pro",
                "slug": "web-pro",
                "type": "hosting_plan",
                "visibility": "public",
                "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("20.00")}],
            },
        )


# --- the API: cancel ----------------------------------------------------------------------------------


def test_api_cancel_previews_then_ends_now_with_the_unused_days_credited_once(portal):
    a1 = portal[0]
    sub = _pay(a1)
    owner = api_client(a1.users[PortalRole.OWNER])
    preview = owner.post(_url(sub, "cancel"), {"at_period_end": False, "preview": True}, format="json")
    assert preview.status_code == 200, preview.content
    body = preview.json()
    # The period starts today: every day of it is unused, so all that was paid for it comes back.
    assert body["applied"] is False and body["credit"] == "8.00" and body["currency"] == "EUR"
    assert body["unused_days"] == (sub.current_period_end - sub.current_period_start).days
    assert body["service"]["status"] == "active"
    assert _credit(a1) == 0 and Subscription.all_tenants.get(pk=sub.pk).status == SubscriptionStatus.ACTIVE

    key = {"HTTP_IDEMPOTENCY_KEY": "cancel-now-1"}
    done = owner.post(_url(sub, "cancel"), {"at_period_end": False}, format="json", **key)
    assert done.status_code == 200, done.content
    assert done.json()["applied"] is True and done.json()["credit"] == "8.00"
    assert done.json()["service"]["status"] == "cancelled"
    # Terminated as a staff cancel is: the subscription.cancel job, in the portal user's name.
    assert Job.all_tenants.filter(type="subscription.cancel", object_id=str(sub.pk)).exists()
    assert _credit(a1) == Decimal("8.00")

    # The same key again: the first answer, nothing applied twice.
    again = owner.post(_url(sub, "cancel"), {"at_period_end": False}, format="json", **key)
    assert again.status_code == 200 and again.json() == done.json()
    # A new request: the service is cancelled already (409), nothing is credited twice.
    retry = owner.post(_url(sub, "cancel"), {"at_period_end": False}, format="json")
    assert retry.status_code == 409
    assert _credit(a1) == Decimal("8.00")
    assert CreditTransaction.all_tenants.filter(customer=a1.customer).count() == 1

    events = AuditEvent.objects.filter(
        object_id=str(sub.pk), action__in=["subscription.cancel", "subscription.cancel_credit"]
    )
    assert {e.action for e in events} == {"subscription.cancel", "subscription.cancel_credit"}
    assert all(e.via == "portal" and e.actor_email == a1.users[PortalRole.OWNER].email for e in events)


def test_api_cancel_at_period_end_keeps_the_service_and_credits_nothing(portal):
    a1 = portal[0]
    sub = _pay(a1)
    billing = api_client(a1.users[PortalRole.BILLING])
    done = billing.post(_url(sub, "cancel"), {}, format="json")
    assert done.status_code == 200, done.content
    body = done.json()
    assert body["at_period_end"] is True and body["ends_on"] == str(sub.current_period_end)
    assert body["credit"] == "0.00" and body["no_credit_reason"] == "period_end"
    assert body["service"]["cancel_at_period_end"] is True and body["service"]["status"] == "active"
    assert _credit(a1) == 0


def test_an_unpaid_period_is_never_credited(portal):
    a1 = portal[0]
    # Running, billed, but the invoice of its period is open: nothing was paid for the days left.
    Subscription.all_tenants.filter(pk=a1.subscription.pk).update(status=SubscriptionStatus.ACTIVE)
    sub = Subscription.all_tenants.get(pk=a1.subscription.pk)
    assert SubscriptionCharge.all_tenants.filter(subscription=sub).exists()
    owner = api_client(a1.users[PortalRole.OWNER])
    done = owner.post(_url(sub, "cancel"), {"at_period_end": False}, format="json")
    assert done.status_code == 200, done.content
    assert done.json()["credit"] == "0.00" and done.json()["no_credit_reason"] == "unpaid"
    assert done.json()["service"]["status"] == "cancelled"
    assert _credit(a1) == 0


def test_api_cancel_and_change_roles_and_isolation(portal):
    a1, a2, b1 = portal
    sub = _pay(a1)
    technical = api_client(a1.users[PortalRole.TECHNICAL])
    for what, body in (("cancel", {"preview": True}), ("change", {"product": str(a1.plan.pk), "preview": True})):
        assert technical.post(_url(sub, what), body, format="json").status_code == 403
        # Another customer of the same tenant, and another tenant's customer: not found.
        assert api_client(a2.users[PortalRole.OWNER]).post(_url(sub, what), body, format="json").status_code == 404
        assert api_client(b1.users[PortalRole.OWNER]).post(_url(sub, what), body, format="json").status_code == 404
    assert Subscription.all_tenants.get(pk=sub.pk).status == SubscriptionStatus.ACTIVE


# --- the API: plan change -----------------------------------------------------------------------------


def test_api_plan_change_previews_then_applies_the_same_figures(portal):
    a1 = portal[0]
    sub = _pay(a1)
    pro = _bigger_plan(a1)
    billing = api_client(a1.users[PortalRole.BILLING])
    preview = billing.post(_url(sub, "change"), {"product": str(pro.pk), "preview": True}, format="json")
    assert preview.status_code == 200, preview.content
    shown = preview.json()
    assert shown["applied"] is False and shown["product"] == "Web Hosting Pro"
    assert shown["old_total"] == "8.00" and shown["new_total"] == "20.00"
    assert shown["charge"] == "12.00" and shown["credit"] == "0.00"  # the whole period is left
    assert Subscription.all_tenants.get(pk=sub.pk).product_id == a1.plan.pk

    done = billing.post(_url(sub, "change"), {"product": str(pro.pk)}, format="json")
    assert done.status_code == 200, done.content
    applied = done.json()
    assert applied["applied"] is True
    assert {k: applied[k] for k in ("charge", "credit", "old_total", "new_total")} == {
        k: shown[k] for k in ("charge", "credit", "old_total", "new_total")
    }
    assert applied["service"]["product"] == "Web Hosting Pro"
    charge = SubscriptionCharge.all_tenants.get(subscription=sub, kind=SubscriptionCharge.Kind.PRORATION)
    assert charge.amount == Decimal("12.00")
    assert AuditEvent.objects.filter(
        action="subscription.change", object_id=str(sub.pk), via="portal",
        actor_email=a1.users[PortalRole.BILLING].email,
    ).exists()  # fmt: skip

    # Back down: the difference is credited to the balance at once (the next day: one change a day).
    down = billing.post(_url(sub, "change"), {"product": str(a1.plan.pk), "preview": True}, format="json")
    assert down.status_code == 200 and down.json()["credit"] == "12.00" and down.json()["charge"] == "0.00"


def test_api_plan_change_refuses_a_plan_the_service_cannot_take(portal):
    a1, _a2, b1 = portal
    sub = _pay(a1)
    owner = api_client(a1.users[PortalRole.OWNER])
    with tenant_scope(a1.tenant):
        hidden = product_create(
            tenant=a1.tenant,
            data={"name": "Staff only", "slug": "staff-only", "type": "hosting_plan", "visibility": "hidden",
                  "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("1.00")}]},
        )  # fmt: skip
    for product in (hidden.pk, b1.plan.pk, "00000000-0000-0000-0000-000000000000"):
        answer = owner.post(_url(sub, "change"), {"product": str(product)}, format="json")
        assert answer.status_code == 400 and b"product" in answer.content, answer.content
    assert owner.post(_url(sub, "change"), {"product": "nope"}, format="json").status_code == 400


# --- the pages: cancel now with the credit shown first ------------------------------------------------


def test_the_cancel_page_shows_the_credit_then_cancels_now_once(portal):
    a1 = portal[0]
    sub = _pay(a1)
    slug = a1.tenant.slug
    browser = page_client(a1.users[PortalRole.BILLING])
    confirm = reverse("portal:service-cancel-confirm", kwargs={"tenant_slug": slug, "pk": sub.pk})
    page = browser.get(confirm).content.decode()
    shown = money(Decimal("8.00"), "EUR")
    assert f"{shown} to your credit balance" in page and "Cancel at period end</button>" in page
    assert _credit(a1) == 0 and Subscription.all_tenants.get(pk=sub.pk).status == SubscriptionStatus.ACTIVE

    post = reverse("portal:service-cancel", kwargs={"tenant_slug": slug, "pk": sub.pk})
    done = browser.post(post, {"when": "now"}, follow=True)
    assert done.status_code == 200
    assert f"{shown} is added to your credit balance" in done.content.decode()
    assert Subscription.all_tenants.get(pk=sub.pk).status == SubscriptionStatus.CANCELLED
    assert _credit(a1) == Decimal("8.00")
    # A second confirmation (a double click, a reload): cancelled already, nothing more credited.
    again = browser.post(post, {"when": "now"}, follow=True)
    assert "cancelled already" in again.content.decode()
    assert _credit(a1) == Decimal("8.00")
    page = browser.get(confirm).content.decode()
    assert "nothing to cancel" in page
    assert (
        AuditEvent.objects.filter(
            action="subscription.cancel_credit", object_id=str(sub.pk), actor_email=a1.users[PortalRole.BILLING].email
        ).count()
        == 1
    )


# --- sign-up: the tenant's currency -------------------------------------------------------------------


def _signup(tenant, email: str) -> Customer:
    portal_services.settings_update(tenant=tenant, allow_signup=True)
    data = portal_services.SignUp(name="Vis Itor", email=email, password="portal-pass-2026-ok", country="NL")
    user = portal_services.signup(tenant=tenant, data=data)
    return Customer.all_tenants.get(pk=user.customer_id)


def test_a_signed_up_customer_is_billed_in_the_tenants_currency(tenant_a):
    tenant = tenant_a.tenant
    tenant.default_currency = "GBP"
    tenant.save(update_fields=["default_currency"])
    assert _signup(tenant, "first@x.test").currency == "GBP"
    # Billing settings that do not take the tenant's default: the first currency they take.
    tenant_settings.settings_update(tenant=tenant, data={"currencies": ["CHF", "EUR"]})
    assert tenant_settings.default_currency(tenant) == "CHF"
    assert _signup(tenant, "second@x.test").currency == "CHF"


def test_staff_cancel_now_credits_by_the_same_rule_when_asked(portal):
    a1 = portal[0]
    sub = _pay(a1)
    admin = Membership.objects.filter(tenant=a1.tenant, role=Role.ADMIN).first().user
    staff = client_for(admin, a1.tenant)
    url = reverse("subscription-cancel", kwargs={"pk": sub.pk})
    done = staff.post(url, {"at_period_end": False, "credit_unused": True}, format="json")
    assert done.status_code == 200, done.content
    assert done.json()["status"] == "cancelled" and _credit(a1) == Decimal("8.00")
    assert staff.post(url, {"at_period_end": False, "credit_unused": True}, format="json").status_code == 409
    assert _credit(a1) == Decimal("8.00")


def test_the_credit_is_what_was_paid_for_the_unused_days_tax_included(portal):
    """A balance pays invoice totals, so the unused days come back with the tax paid on them (a net
    credit would keep the tax of days never used); the setup fee is not refunded."""
    from apps.catalog.models import TaxRate
    from apps.orders.services import order_accept, order_create

    a1 = portal[0]
    with tenant_scope(a1.tenant):
        TaxRate.objects.create(tenant=a1.tenant, country="NL", tax_class="standard", rate=Decimal("21"), name="BTW")
        Customer.objects.filter(pk=a1.customer.pk).update(country="NL")
        order = order_accept(order=order_create(tenant=a1.tenant, customer=Customer.objects.get(pk=a1.customer.pk),
                                                items=[{"product": a1.plan, "cycle": "monthly"}]))  # fmt: skip
        invoice = Invoice.objects.get(pk=order.invoice_id)
        assert invoice.tax_total == Decimal("2.10")  # 21 % of 8.00 + 2.00 setup
        payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="bank_transfer", reference="T9")
        sub = order.items.first().subscription
    owner = api_client(a1.users[PortalRole.OWNER])
    done = owner.post(_url(sub, "cancel"), {"at_period_end": False}, format="json")
    assert done.status_code == 200, done.content
    assert done.json()["credit"] == "9.68"  # the whole period unused: 8.00 + 1.68 tax, not the 2.42 setup
    assert _credit(a1) == Decimal("9.68")
