"""A walk through every admin page of our models, on the demo business.

For each ModelAdmin of ours (the models of ``apps.*``), a superuser operator logged in with TOTP opens
the changelist, the add page (when the admin allows adding) and the change page of one row; none may
answer 403 or 500, or come back without the admin's stylesheet (an unstyled page is Django's bare
error page, or a template that forgot the console's base). The rows are the demo's
(``apps/console/demo.py``, seeded once for the module through the services, on a real runc node and
a real MariaDB), and the few models the demo has no row of are made here.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import AuthToken
from apps.billing.models import Invoice, WebhookEvent
from apps.console import demo
from apps.customers import services as customer_services
from apps.tenancy.models import Tenant
from apps.tenancy.scoping import all_tenants, tenant_scope
from tests.conftest import admin_login, client_for, make_tenant
from tests.databases_support import mariadb_server  # noqa: F401  (fixture: a real MariaDB, session-wide)
from tests.pods_support import cleanup_containers

STYLESHEET = b"console/console.css"


def our_admins() -> dict:
    """Every ModelAdmin of our apps, by a readable id (the parametrized test's name)."""
    return {
        f"{model._meta.label}:{type(model_admin).__name__}": (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model.__module__.startswith("apps.")
    }


ADMINS = our_admins()


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker, tmp_path_factory, mariadb_server):  # noqa: F811
    """The demo business, seeded once for this module's tests (committed; flushed at the end)."""
    if shutil.which("runc") is None or not Path("/bin/busybox").exists():
        pytest.fail("runc and busybox-static are needed: run the tests with `make test` (it installs them)")
    root = tmp_path_factory.mktemp("walk") / "node"
    env = {
        "MPANEL_NODE_ROOT": str(root),
        "MPANEL_DNS_BACKEND": "bind",
        "MPANEL_DEMO_DB_ENGINE": "mariadb",
        "MPANEL_DEMO_DB_HOST": mariadb_server.host,
        "MPANEL_DEMO_DB_PORT": str(mariadb_server.port),
        "MPANEL_DEMO_DB_USER": mariadb_server.admin_user,
        "MPANEL_DEMO_DB_PASSWORD": mariadb_server.admin_password,
    }
    with pytest.MonkeyPatch.context() as mp, override_settings(MPANEL_NODE_ROOT=root), django_db_blocker.unblock():
        for name, value in env.items():
            mp.setenv(name, value)
        try:
            seed = demo.Demo(password=demo.DEFAULT_PASSWORD)
            for _label, step in demo.steps(seed):
                step()
            _extra_rows(seed)
            yield seed
        finally:
            cleanup_containers(root)
            call_command("flush", interactive=False, verbosity=0)


def _extra_rows(seed: demo.Demo) -> None:
    """Rows of the models the demo has none of, through their services where they are written by a
    person; machine records (metrics, Shield events, a webhook delivery, a Stripe checkout) as the
    code that receives them stores them."""
    from apps.billing.models import CheckoutSession, Invoice, Subscription
    from apps.billing.services import subscriptions
    from apps.catalog import services as catalog
    from apps.cloudpods.models import TenantQuota
    from apps.databases import services as db_services
    from apps.databases.models import Database
    from apps.mail import services as mail_services
    from apps.mail.models import Mailbox
    from apps.metrics.models import HourRollup, MinuteRollup, NodeReport, Sample
    from apps.names import services as names_services
    from apps.orders import services as order_services
    from apps.security import guardian
    from apps.security import services as security_services
    from apps.tenancy.roles import Role

    owner = get_user_model().objects.get(email="owner@demo.mpanel.local")
    other = make_tenant("Walk Reseller")
    tenant = seed.tenant
    with tenant_scope(tenant):
        customer = next(iter(seed.customers.values()))
        customer_services.contact_create(customer=customer, data={"name": "Billing desk", "email": "desk@example.com"})
        database = Database.objects.first()
        user, _password = db_services.user_create(tenant=tenant, server=database.server, name="app")
        db_services.grant_create(database=database, user=user)
        mailbox = Mailbox.objects.select_related("mail_domain").first()
        mail_services.alias_create(mail_domain=mailbox.mail_domain, local_part="sales", destinations=["a@b.example"])
        mail_services.autoresponder_create(mailbox=mailbox, subject="Away", body="Back on Monday.")
        names_services.delegation_create(tenant=tenant, name=f"shop.{demo.DOMAIN}", grantee=other.tenant)
        order_services.order_create(tenant=tenant, customer=customer,
                                    items=[{"product": seed.products["web-starter"], "cycle": "monthly"}])  # fmt: skip
        sub = Subscription.objects.select_related("product").filter(status="active").first()
        catalog.product_update(
            product=sub.product, data={"metering": {"unit": "GB", "unit_prices": {sub.currency: "0.05"}}}
        )
        subscriptions.usage_record(sub=Subscription.objects.get(pk=sub.pk), quantity=Decimal("3"), key="walk-1")
        security_services.token_create(tenant=tenant, actor=owner, actor_role=Role.OWNER, name="ci")
        security_services.policy_update(tenant=tenant, actor=owner, data={"session_idle_timeout_minutes": 60})
        security_services.shield_policy_create(tenant=tenant, data={"block_cidrs": ["198.51.100.7/32"]})
        security_services.shield_events_ingest(tenant=tenant, events=[{"occurred_at": timezone.now(),
                                               "ip": "198.51.100.7", "rule": "ip_block"}])  # fmt: skip
        guardian.scan(tenant=tenant)
        TenantQuota.objects.create(tenant=tenant, max_pods=20, note="walk")
        invoice = Invoice.objects.filter(status="open").first()
        CheckoutSession.objects.create(tenant=tenant, invoice=invoice, session_id="cs_walk",
                                       currency=invoice.currency, amount=invoice.total,
                                       url="https://checkout.stripe.com/c/pay/cs_walk")  # fmt: skip
    _new_module_rows(seed, owner, customer)
    api = client_for(owner, tenant)
    answer = api.post(f"/api/v1/customers/{customer.pk}/contacts/", {"name": "Ops", "email": "ops@example.com"},
                      format="json", HTTP_IDEMPOTENCY_KEY="walk-1")  # fmt: skip
    assert answer.status_code == 201, answer.content
    AuthToken.issue(user=owner, ttl=timedelta(days=1), ip="192.0.2.1")
    WebhookEvent.objects.create(provider="generic", event_id="walk-1", type="payment.succeeded", payload={},
                                raw_body="{}", tenant=tenant)  # fmt: skip
    node = seed.node
    rollup = {"node": node, "metric": "cpu.percent", "value_avg": 1.5, "value_min": 1, "value_max": 2, "samples": 2}
    Sample.objects.create(node=node, metric="cpu.percent", ts=1764000000, value=1.5, received_at=1764000001)
    MinuteRollup.objects.create(ts=1764000000, **rollup)
    HourRollup.objects.create(ts=1763998800, **rollup)
    NodeReport.objects.create(node=node, reported_at=timezone.now(), services={"nginx": {"state": "up"}},
                              latest={"cpu.percent": [1764000000, 1.5]})  # fmt: skip


def _new_module_rows(seed: demo.Demo, owner, customer) -> None:
    """Rows of the business-loop modules (brand, portal, domains' settings, hosting to-dos, SSL,
    backups): what a person writes through the services, machine records as their jobs store them."""
    from apps.backups import crypto as backup_crypto
    from apps.backups.models import BackupPolicy, BackupRepository, Drill, Restore, Snapshot
    from apps.domains import services as domain_services
    from apps.hosting import services as hosting_services
    from apps.portal import services as portal_services
    from apps.ssl import services as ssl_services
    from apps.ssl.crypto import seal
    from apps.ssl.models import AcmeAccount, Certificate
    from apps.whitelabel import services as brand_services
    from apps.whitelabel.models import CustomDomain

    tenant = seed.tenant
    with tenant_scope(tenant):
        brand_services.brand_update(tenant=tenant, data={"display_name": "Demo Hosting"}, actor=owner)
        CustomDomain.objects.create(tenant=tenant, hostname="my.demo-hosting.example")
        portal_services.settings_update(tenant=tenant, allow_signup=True)
        portal_services.portal_user_invite(customer=customer, email="client@example.com", role="owner", actor=owner)
        domain_services.domain_settings_update(tenant=tenant, data={"on_failed_registration": "retry"}, actor=owner)
        hosting_services.todo_open(tenant_id=tenant.pk, kind="service", key="walk-1", title="Migrate a site")
        AcmeAccount.objects.create(tenant=tenant, directory="https://acme.example/dir", key_encrypted=seal("k"))
        Certificate.objects.create(tenant=tenant)
        ssl_services.settings_update(tenant=tenant, data={"revoke_on_delete": True}, actor=owner)
        repo = BackupRepository.objects.create(tenant=tenant, name="main", node=seed.node,
                                               password_encrypted=backup_crypto.encrypt("walk"))  # fmt: skip
        policy = BackupPolicy.objects.create(tenant=tenant, name="nightly", repository=repo)
        snapshot = Snapshot.objects.create(tenant=tenant, repository=repo, resource_kind="website",
                                           resource_id=uuid.uuid4(), resource_label="demo site")  # fmt: skip
        Restore.objects.create(tenant=tenant, snapshot=snapshot, target_kind="website", target_id=uuid.uuid4(),
                               target_label="demo site")  # fmt: skip
        Drill.objects.create(tenant=tenant, policy=policy)


@pytest.fixture
def console(seeded, db, client):
    operator = get_user_model().objects.get(email=demo.OPERATOR_EMAIL)
    return admin_login(client, operator)


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _styled(response) -> bool:
    return STYLESHEET in response.content


def _check(response, what: str) -> None:
    assert response.status_code not in (403, 500), f"{what}: {response.status_code}"
    assert response.status_code == 200, f"{what}: {response.status_code} {response.get('Location', '')}"
    assert _styled(response), f"{what}: no admin stylesheet (unstyled page)"


@pytest.mark.parametrize("name", sorted(ADMINS))
def test_every_admin_page_opens_styled(console, name):
    model, model_admin = ADMINS[name]
    changelist = console.get(_url(model, "changelist"))
    _check(changelist, f"{name} changelist")
    request = changelist.wsgi_request

    if model_admin.has_add_permission(request):
        add = console.get(_url(model, "add"), follow=True)
        _check(add, f"{name} add page")
        if "admin/tenant_picker.html" in [t.name for t in add.templates]:  # the tenant first, then its form
            tenant = Tenant.objects.get(slug=demo.TENANT_SLUG)
            _check(console.get(_url(model, "add"), {"tenant": str(tenant.pk)}), f"{name} add page for a tenant")

    with all_tenants():  # as the admin reads: the operator sees every tenant
        obj = model_admin.get_queryset(request).order_by("pk").first()
    assert obj is not None, f"{name}: no row to open (the demo seeds none and the test makes none)"
    change = console.get(_url(model, "change", obj.pk))
    _check(change, f"{name} change page of {obj.pk}")

    # The pages of its buttons that ask something first (a form, a question): opened, never answered.
    for action in change.context.get("object_actions") or []:
        if action["link"] and not action["url"].endswith("/pdf/"):
            answer = console.get(action["url"], follow=True)
            if answer.get("Content-Type", "").startswith("text/html"):
                _check(answer, f"{name} action {action['name']} of {obj.pk}")


# --- the tenant first: an add page never offers every tenant's rows --------------------------------


def test_an_add_page_asks_for_the_tenant_first_and_offers_only_its_rows(seeded, db, console):
    from apps.customers.models import Contact, Customer

    demo_tenant = Tenant.objects.get(slug=demo.TENANT_SLUG)
    other = Tenant.objects.get(name="Walk Reseller")
    with tenant_scope(other):
        theirs = customer_services.customer_create(tenant=other, data={"name": "Not Yours", "email": "n@y.example"})

    picker = console.get(_url(Contact, "add"))
    _check(picker, "contact add page")
    assert picker.templates[0].name == "admin/tenant_picker.html"
    links = picker.content.decode()
    assert f"?tenant={demo_tenant.pk}" in links and f"?tenant={other.pk}" in links

    page = console.get(_url(Contact, "add"), {"tenant": str(demo_tenant.pk)})
    _check(page, "contact add page for the demo tenant")
    offered = page.context["adminform"].form.fields["customer"].queryset
    with all_tenants():
        assert theirs not in offered and set(offered) == set(Customer.objects.filter(tenant=demo_tenant))
    # Its autocomplete searches that tenant's customers only.
    found = console.get(
        "/admin/autocomplete/",
        {"term": "", "app_label": "customers", "model_name": "contact", "field_name": "customer",
         "tenant": str(demo_tenant.pk)},
    )  # fmt: skip
    assert found.status_code == 200, found.content
    ids = {row["id"] for row in found.json()["results"]}
    assert str(theirs.pk) not in ids and ids
    # Opened from a customer's page, the customer's tenant is the choice: no picker.
    invoice_add = console.get(_url(Invoice, "add"), {"customer": str(theirs.pk)})
    _check(invoice_add, "invoice add page for a customer")
    assert "adminform" in invoice_add.context
