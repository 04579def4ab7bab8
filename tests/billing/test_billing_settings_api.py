"""Billing settings through the API (`/billing/settings`) and the admin, both by one service."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.models import BillingSettings, StripeConnection
from apps.billing.services import tenant_settings
from apps.tenancy.roles import Role
from tests.billing_support import account_object, customer_of, issued, stripe_api  # noqa: F401 (a fixture)
from tests.conftest import PASSWORD, admin_login, client_for

URL = "/api/v1/billing/settings"


def admin_of(fx):
    return client_for(fx.users[Role.ADMIN], fx.tenant)


@pytest.mark.django_db
class TestSettingsApi:
    def test_read_defaults_without_writing(self, tenant_a):
        response = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant).get(URL)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["invoice_number_format"] == "INV-{year}-{seq:06}" and body["payment_terms_days"] == 14
        assert body["payment_methods"] == ["bank_transfer", "cash", "cheque", "stripe", "generic"]
        assert body["currencies"] == []
        assert not BillingSettings.objects.exists()

    def test_roles(self, tenant_a):
        assert client_for(None, tenant_a.tenant).get(URL).status_code == 401
        for role in (Role.VIEWER, Role.MEMBER):
            assert client_for(tenant_a.users[role], tenant_a.tenant).get(URL).status_code == 403
        billing = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
        assert billing.get(URL).status_code == 200
        assert billing.patch(URL, {"payment_terms_days": 30}, format="json").status_code == 403
        assert billing.put(URL, {"payment_terms_days": 30}, format="json").status_code == 403
        for role in (Role.ADMIN, Role.OWNER):
            response = client_for(tenant_a.users[role], tenant_a.tenant).patch(URL, {"lead_days": 5}, format="json")
            assert response.status_code == 200, response.content

    def test_a_change_is_audited_and_leaves_the_rest_and_other_tenants_alone(self, tenant_a, tenant_b):
        body = {
            "invoice_number_format": "A-{year}-{seq:05}", "payment_terms_days": 30,
            "reminder_days_after": [7, 1], "suspend_after_days": 10, "terminate_after_days": 40,
            "currencies": ["EUR", "USD"], "payment_methods": ["bank_transfer", "stripe"],
        }  # fmt: skip
        response = admin_of(tenant_a).put(URL, body, format="json")
        assert response.status_code == 200, response.content
        got = response.json()
        assert got["reminder_days_after"] == [1, 7] and got["credit_note_number_format"] == "CN-{year}-{seq:06}"
        event = AuditEvent.objects.get(action="billing_settings.update")
        assert event.tenant_id == tenant_a.tenant.pk and event.actor == tenant_a.users[Role.ADMIN]
        assert event.changes["payment_terms_days"] == [14, 30]
        assert client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant).get(URL).json()["payment_terms_days"] == 14
        # The next invoice takes the new number format and terms.
        invoice = issued(tenant_a, currency="EUR")
        assert invoice.number.startswith("A-") and (invoice.due_date - invoice.issue_date).days == 30
        # The same again changes nothing and records nothing.
        assert admin_of(tenant_a).patch(URL, {"payment_terms_days": 30}, format="json").status_code == 200
        assert AuditEvent.objects.filter(action="billing_settings.update").count() == 1

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"invoice_number_format": "INV-{year}"}, "invoice_number_format"),  # no {seq}
            ({"invoice_number_format": "INV-{seq}{month}"}, "invoice_number_format"),  # 11+2 = 1+12
            ({"invoice_number_format": "{month}{seq}"}, "invoice_number_format"),  # 1,12 = 11,2
            ({"invoice_number_format": "INV-{day}-{seq}"}, "invoice_number_format"),
            ({"invoice_number_format": "INV-{seq"}, "invoice_number_format"),
            ({"invoice_number_format": "X" * 60 + "{seq}"}, "invoice_number_format"),
            ({"credit_note_number_format": "INV-{year}-{seq:06}"}, "credit_note_number_format"),  # = invoices'
            ({"payment_terms_days": -1}, "payment_terms_days"),
            ({"payment_terms_days": "14"}, "payment_terms_days"),
            ({"reminder_days_before": [3, 3]}, "reminder_days_before"),
            ({"reminder_days_after": [0]}, "reminder_days_after"),
            ({"reminder_days_after": list(range(1, 13))}, "reminder_days_after"),
            ({"suspend_after_days": 30, "terminate_after_days": 10}, "terminate_after_days"),
            ({"currencies": ["EURO"]}, "currencies"),
            ({"payment_methods": []}, "payment_methods"),
            ({"payment_methods": ["bitcoin"]}, "payment_methods"),
            ({"lead_days": 400}, "lead_days"),
        ],
    )
    def test_bad_settings_are_400_and_write_nothing(self, tenant_a, body, field):
        response = admin_of(tenant_a).patch(URL, body, format="json")
        assert response.status_code == 400, response.content
        assert field in str(response.json()), response.content
        assert not AuditEvent.objects.filter(action="billing_settings.update").exists()
        assert tenant_settings.settings_of(tenant_a.tenant).invoice_number_format == "INV-{year}-{seq:06}"

    def test_formats_that_do_give_unique_numbers(self):
        for fmt in ("INV-{year}-{seq:06}", "{seq}", "{year}{seq}", "{seq}/{month}", "F{year}{month:02}-{seq:04}"):
            assert tenant_settings.check_number_format(fmt, field="f") == fmt

    def test_currencies_hold_invoices_made_by_hand(self, tenant_a):
        admin = admin_of(tenant_a)
        assert admin.patch(URL, {"currencies": ["USD"]}, format="json").status_code == 200
        customer = customer_of(tenant_a, currency="EUR")
        line = {"description": "Work", "unit_price": "10.00"}
        refused = admin.post(reverse("invoice-list"), {"customer": str(customer.pk), "lines": [line]}, format="json")
        assert refused.status_code == 400 and "currency" in refused.json()
        ok = admin.post(reverse("invoice-list"), {"customer": str(customer.pk), "currency": "USD", "lines": [line]},
                        format="json")  # fmt: skip
        assert ok.status_code == 201, ok.content


@pytest.fixture
def console(client, db):
    operator = get_user_model().objects.create_superuser("operator@mpanel.test", PASSWORD)
    return admin_login(client, operator)


def change_url(row) -> str:
    return reverse("admin:billing_billingsettings_change", args=[row.pk])


@pytest.mark.django_db
class TestAdmin:
    def form(self, row, **changes) -> dict:
        data = {
            "invoice_number_format": row.invoice_number_format, "credit_note_number_format":
            row.credit_note_number_format, "payment_terms_days": row.payment_terms_days, "lead_days": row.lead_days,
            "reminder_days_before": "[]", "reminder_days_after": "[1, 7]", "suspend_after_days": 14,
            "terminate_after_days": 45, "payment_methods": ["bank_transfer", "stripe"], "currencies": ["EUR"],
        }  # fmt: skip
        data.update(changes)
        return data

    def test_the_admin_form_saves_through_the_service(self, tenant_a, console):
        with tenant_a.scope():
            row = tenant_settings.settings_update(tenant=tenant_a.tenant, data={"payment_terms_days": 20})
        page = console.get(change_url(row))
        assert page.status_code == 200 and b"Connect Stripe" in page.content
        response = console.post(change_url(row), self.form(row, payment_terms_days=21))
        assert response.status_code == 302, response.content[:2000]
        row.refresh_from_db()
        assert row.payment_terms_days == 21 and row.reminder_days_after == [1, 7] and row.currencies == ["EUR"]
        event = AuditEvent.objects.filter(action="billing_settings.update").latest("created_at")
        assert event.changes["payment_terms_days"] == [20, 21] and event.actor.is_staff

    def test_the_admin_shows_the_services_refusal_on_the_field(self, tenant_a, console):
        with tenant_a.scope():
            row = tenant_settings.settings_update(tenant=tenant_a.tenant, data={"payment_terms_days": 20})
        response = console.post(change_url(row), self.form(row, invoice_number_format="{seq}{month}"))
        assert response.status_code == 200
        assert "cannot give unique numbers" in str(response.context["adminform"].form.errors["invoice_number_format"])
        row.refresh_from_db()
        assert row.invoice_number_format == "INV-{year}-{seq:06}" and row.payment_terms_days == 20

    def test_operators_connect_stripe_set_the_fee_and_disconnect(self, tenant_a, console, stripe_api):  # noqa: F811
        with tenant_a.scope():
            row = tenant_settings.settings_update(tenant=tenant_a.tenant, data={"payment_terms_days": 20})
        stripe_api.accounts["acct_1AdminConnect0"] = account_object("acct_1AdminConnect0", type_="standard")
        do = reverse("admin:billing_billingsettings_object_action", args=[row.pk, "connect_stripe"])
        response = console.post(do, {"account_type": "standard", "account_id": "acct_1AdminConnect0"}, follow=True)
        assert response.status_code == 200
        assert b"https://connect.stripe.com/setup/" in response.content
        connection = StripeConnection.objects.get(tenant=tenant_a.tenant)
        assert connection.account_id == "acct_1AdminConnect0"
        link = next(r for r in stripe_api.requests if r[1] == "/v1/account_links")[2]
        assert link["return_url"].endswith(change_url(row))
        fee = reverse("admin:billing_billingsettings_object_action", args=[row.pk, "platform_fee"])
        assert console.post(fee, {"platform_fee_percent": "60"}).status_code == 200  # the form again: max 50
        assert console.post(fee, {"platform_fee_percent": "2.50"}).status_code == 302
        connection.refresh_from_db()
        assert str(connection.platform_fee_percent) == "2.50"
        assert AuditEvent.objects.filter(action="stripe_connection.fee", tenant=tenant_a.tenant).exists()
        off = reverse("admin:billing_billingsettings_object_action", args=[row.pk, "disconnect_stripe"])
        assert console.post(off, {"confirmed": "yes"}).status_code == 302
        connection.refresh_from_db()
        assert not connection.live
