"""Admin pages whose writes are the services': products deleted through Django's delete (a product
that was sold is retired, as the API does; one never sold is deleted), and autoresponders edited
through the mail service."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.services import subscriptions
from apps.catalog import services as catalog
from apps.catalog.models import Product, Visibility
from apps.customers import services as customer_services
from tests.conftest import PASSWORD, admin_login


@pytest.fixture
def console(db, client):
    operator = get_user_model().objects.create_superuser("ops@mpanel.test", PASSWORD)
    return admin_login(client, operator)


def _product(fx, slug: str) -> Product:
    with fx.scope():
        return catalog.product_create(tenant=fx.tenant, data={
            "name": slug.title(), "slug": slug, "type": "addon",
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("3.00")}],
        })  # fmt: skip


def test_deleting_a_product_never_sold_deletes_it(console, tenant_a):
    product = _product(tenant_a, "spare")
    delete = reverse("admin:catalog_product_delete", args=[product.pk])
    assert console.get(delete).status_code == 200
    assert console.post(delete, {"post": "yes"}).status_code == 302
    assert not Product.all_tenants.filter(pk=product.pk).exists()
    assert AuditEvent.objects.filter(action="product.delete", object_id=str(product.pk)).count() == 1


def test_deleting_a_sold_product_retires_it(console, tenant_a):
    product = _product(tenant_a, "sold")
    with tenant_a.scope():
        customer = customer_services.customer_create(tenant=tenant_a.tenant, data={"name": "B", "email": "b@x.example",
                                                                                   "currency": "EUR"})  # fmt: skip
        subscriptions.subscription_create(tenant=tenant_a.tenant, customer=customer, product=product, cycle="monthly",
                                          bill_now=False)  # fmt: skip
    delete = reverse("admin:catalog_product_delete", args=[product.pk])
    page = console.get(delete)
    assert page.status_code == 200 and "retired rather than deleted" in page.content.decode()
    answer = console.post(delete, {"post": "yes"}, follow=True)
    assert answer.status_code == 200
    assert "it is retired, not deleted" in answer.content.decode()
    product = Product.all_tenants.get(pk=product.pk)
    assert product.visibility == Visibility.RETIRED
    assert AuditEvent.objects.filter(action="product.retire", object_id=str(product.pk)).count() == 1
    assert not AuditEvent.objects.filter(action="product.delete").exists()

    # The list's bulk delete takes the same path.
    other = _product(tenant_a, "other")
    changelist = reverse("admin:catalog_product_changelist")
    console.post(changelist, {"action": "delete_selected", "_selected_action": [str(other.pk)], "post": "yes"})
    assert not Product.all_tenants.filter(pk=other.pk).exists()


def test_an_autoresponder_is_added_edited_and_deleted_through_the_mail_service(console, tenant_a):
    from apps.mail import services as mail_services
    from apps.mail.models import Autoresponder
    from apps.nodes.models import Node

    with tenant_a.scope():
        node = Node.objects.create(tenant=tenant_a.tenant, hostname="mail-1", roles=["mail"], vcpu=1, memory_mb=512,
                                   disk_gb=1, max_pods=0)  # fmt: skip
        domain = mail_services.mail_domain_create(tenant=tenant_a.tenant, name="away.example", node=node)
        box = mail_services.mailbox_create(mail_domain=domain, local_part="ceo", password="x" * 16)
    add = reverse("admin:mail_autoresponder_add")
    page = console.get(add, {"tenant": str(tenant_a.tenant.pk)})
    assert page.status_code == 200 and box in page.context["adminform"].form.fields["mailbox"].queryset
    data = {"mailbox": str(box.pk), "enabled": "on", "subject": "Away", "body": "Back on Monday.",
            "interval_days": "1"}  # fmt: skip
    assert console.post(add, data).status_code == 302
    responder = Autoresponder.all_tenants.get(mailbox=box)
    assert AuditEvent.objects.filter(action="mail.autoresponder.create", object_id=str(responder.pk)).exists()

    change = reverse("admin:mail_autoresponder_change", args=[responder.pk])
    answer = console.post(change, {**{k: v for k, v in data.items() if k != "mailbox"}, "subject": "On holiday"})
    assert answer.status_code == 302
    assert Autoresponder.all_tenants.get(pk=responder.pk).subject == "On holiday"
    (event,) = AuditEvent.objects.filter(action="mail.autoresponder.update", object_id=str(responder.pk))
    assert event.changes["subject"] == ["Away", "On holiday"]

    bad = console.post(change, {**data, "end_date": "2020-01-01", "start_date": "2021-01-01"})
    assert bad.status_code == 200 and bad.context["adminform"].form.errors  # the service's rule, as a form error

    delete = reverse("admin:mail_autoresponder_object_action", args=[responder.pk, "delete"])
    assert console.post(delete, {"confirmed": "yes"}).status_code == 302
    assert not Autoresponder.all_tenants.filter(pk=responder.pk).exists()
