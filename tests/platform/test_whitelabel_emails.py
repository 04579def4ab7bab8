"""Customers' e-mails in the tenant's brand: amounts as people read them, the sender (the tenant's
own address, DKIM-signed, when its mail domain is on the platform; else the platform's address under
the tenant's name, with Reply-To)."""

from __future__ import annotations

import dkim
import dns.message
import dns.query
import pytest
from django.core import mail
from django.core.cache import cache

from apps.billing.services import invoices, notifications
from apps.dns import services as dns_services
from apps.dns.models import Zone
from apps.mail import services as mail_services
from apps.tenancy.roles import Role
from apps.whitelabel import services as brand_services
from apps.whitelabel.emails import platform_address
from tests.billing_support import draft
from tests.conftest import client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401
from tests.hosting.test_dns import dns_node, zones_url
from tests.hosting.test_mail import mail_node


@pytest.fixture(autouse=True)
def _clean(settings):
    settings.MPANEL_JOBS_EAGER = True
    settings.MPANEL_DISPLAY_LOCALE = "en_US"
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
def test_invoice_emails_show_amounts_through_display_money(tenant_a, django_capture_on_commit_callbacks):
    fx = tenant_a
    invoice = draft(fx, lines=[{"description": "Hosting", "quantity": "1", "unit_price": "1999.99", "tax_rate": "21"}])
    with fx.scope(), django_capture_on_commit_callbacks(execute=True):
        invoice = invoices.invoice_issue(invoice=invoice)
    mail.outbox.clear()
    for event in ("issued", "paid", "due_soon", "overdue"):
        notifications.send_invoice_email(str(invoice.pk), event)
    assert len(mail.outbox) == 4
    for message in mail.outbox:
        html = message.alternatives[0][0]
        assert "€2,419.99" in message.body and "€2,419.99" in html, message.body
        assert "2419.9900" not in message.body and " EUR" not in message.body, message.body


# --- DKIM: From the tenant's own hosted mail domain ------------------------------------------------


def txt_lookup(pdns):
    """dkimpy's DNS hook, answered by the real PowerDNS (the record as the tenant's zone publishes it)."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        query = dns.message.make_query(name.decode(), "TXT")
        answer = dns.query.udp(query, "127.0.0.1", port=pdns.dns_port, timeout=timeout)
        for rrset in answer.answer:
            for rdata in rrset:
                return b"".join(rdata.strings)
        return None

    return lookup


@pytest.mark.django_db
def test_mail_from_the_tenants_own_domain_is_dkim_signed(
    tenant_a,
    tenant_b,
    pdns_node_env,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    fx = tenant_a
    dns_node(fx)
    admin = client_for(fx.users[Role.ADMIN], fx.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post(zones_url(), {"name": "nimbus-mail.example"}, format="json").status_code == 201
    # The mail domain publishes its DKIM key into the zone; the node's mail sync is not needed here.
    with fx.scope():
        domain = mail_services.mail_domain_create(tenant=fx.tenant, name="nimbus-mail.example", node=mail_node(fx))
        zone = Zone.objects.get(name="nimbus-mail.example")
    with fx.scope(), django_capture_on_commit_callbacks(execute=True):
        dns_services.zone_update(zone=zone, data={})
    published = txt_lookup(pdns_node_env)(f"{domain.dkim_selector}._domainkey.nimbus-mail.example.".encode())
    assert published == domain.dkim_record.encode()

    with fx.scope(), django_capture_on_commit_callbacks(execute=True):
        brand_services.brand_update(tenant=fx.tenant, data={
            "display_name": "Nimbus Hosting", "sender_email": "billing@nimbus-mail.example",
            "support_email": "help@nimbus-mail.example"})  # fmt: skip
    invoice = draft(fx)
    with fx.scope():
        invoice = invoices.invoice_issue(invoice=invoice)
    mail.outbox.clear()
    notifications.send_invoice_email(str(invoice.pk), "issued")
    (sent,) = mail.outbox
    assert sent.from_email == "Nimbus Hosting <billing@nimbus-mail.example>"
    assert sent.reply_to == ["Nimbus Hosting <help@nimbus-mail.example>"]
    raw = sent.message().as_bytes(linesep="\r\n")
    assert b"DKIM-Signature:" in raw and b"d=nimbus-mail.example" in raw
    assert dkim.verify(raw, dnsfunc=txt_lookup(pdns_node_env))
    # A changed byte breaks it: the signature covers the body and the headers people see.
    assert not dkim.verify(raw.replace(b"Subject: Invoice", b"Subject: Invoic3"), dnsfunc=txt_lookup(pdns_node_env))

    # An address on a mail domain of ANOTHER tenant (or none hosted here): the platform's address under
    # the brand's name, unsigned, replies to the brand.
    with tenant_b.scope():
        mail_services.mail_domain_create(tenant=tenant_b.tenant, name="bees-mail.example", node=mail_node(tenant_b))
    with fx.scope(), django_capture_on_commit_callbacks(execute=True):  # the brand's cache drops on commit
        brand_services.brand_update(tenant=fx.tenant, data={"sender_email": "billing@bees-mail.example",
                                                            "support_email": ""})  # fmt: skip
    mail.outbox.clear()
    notifications.send_invoice_email(str(invoice.pk), "paid")
    (plain,) = mail.outbox
    assert plain.from_email == f"Nimbus Hosting <{platform_address()}>"
    assert "bees-mail" not in plain.from_email and plain.reply_to == ["Nimbus Hosting <billing@bees-mail.example>"]
    assert b"DKIM-Signature" not in plain.message().as_bytes()
