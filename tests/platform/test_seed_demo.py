"""`seed_demo`: the demo business behind `make run` fills every screen, through the services, once.

- Every screen has its rows: products with prices and a bundle, customers in several countries,
  invoices in every state (draft, open, overdue, paid, void, one with a credit note), active,
  past-due and cancelled subscriptions, a running CloudPod on a real runc, a website, a domain with
  its zone, a mailbox, a database, jobs that succeeded and one that failed, security events.
- Running it again changes nothing: the same rows in every table, and a session made between the
  two runs still works (no password reset, no session ended).
- The demo operator's TOTP device is made by the seed; a code from its printed secret logs the
  operator into the admin.
- Its database lives on a real MariaDB (``make run`` starts one under var/, given by MPANEL_DEMO_DB_*);
  without one (MPANEL_LOCAL_NODE_PACKAGES=0) the seed makes no database server and says so.
"""

from __future__ import annotations

import io
import re

import pyotp
import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.billing.models import CreditNote, Invoice, Subscription
from apps.catalog.models import BundleItem, Product
from apps.cloudpods.models import CloudPod, PodStatus
from apps.console import demo
from apps.customers.models import Customer
from apps.databases.models import Database, DatabaseServer
from apps.dns.models import Zone
from apps.domains.models import Domain
from apps.jobs.models import Job, JobStatus
from apps.mail.models import Mailbox
from apps.security.models import SecurityEvent
from apps.websites.models import Website
from tests.conftest import make_tenant
from tests.databases_support import mariadb_server  # noqa: F401  (fixture: a real MariaDB on a loopback port)
from tests.pods_support import node_root  # noqa: F401  (fixture: a runc node root of this test's own)

PASSWORD = "mpanel-demo-2026"


@pytest.fixture
def seeded(transactional_db, node_root, mariadb_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MPANEL_DNS_BACKEND", "bind")  # as `make run`: zone files under the node root
    # As scripts/run.sh exports them for the MariaDB it starts under var/.
    for name, value in {
        "ENGINE": "mariadb",
        "HOST": mariadb_server.host,
        "PORT": str(mariadb_server.port),
        "USER": mariadb_server.admin_user,
        "PASSWORD": mariadb_server.admin_password,
    }.items():
        monkeypatch.setenv(f"MPANEL_DEMO_DB_{name}", value)  # fmt: skip
    out = io.StringIO()
    call_command("seed_demo", "--no-qr", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _rows() -> dict[str, int]:
    counts = {}
    for model in apps.get_models():
        manager = getattr(model, "all_tenants", model._default_manager)
        counts[model._meta.label] = manager.count()
    return counts


def test_every_screen_has_its_rows(seeded, mariadb_server):  # noqa: F811
    assert Product.all_tenants.filter(prices__isnull=False).distinct().count() >= 5
    assert BundleItem.all_tenants.exists()
    assert {str(c) for c in Customer.all_tenants.values_list("country", flat=True)} >= {"GB", "US", "DE", "FR"}
    statuses = set(Invoice.all_tenants.values_list("status", flat=True))
    assert statuses >= {"draft", "open", "paid", "void"}
    assert Invoice.all_tenants.filter(status="open", due_date__lt=timezone.localdate()).exists()  # overdue
    assert CreditNote.all_tenants.exists()
    assert set(Subscription.all_tenants.values_list("status", flat=True)) >= {"active", "past_due", "cancelled"}
    # The past-due one: its renewal was issued with a due date three days ago; no invoice was changed after.
    past_due = Subscription.all_tenants.get(status="past_due")
    renewal = Invoice.all_tenants.filter(lines__subscription_charge__subscription=past_due).latest("created_at")
    assert renewal.status == "open" and renewal.due_date < timezone.localdate()
    assert not AuditEvent.objects.filter(action="invoice.due_date").exists()
    # Jean's credit (his credit note) paid his web hosting's first invoice in full: it is active.
    jean = Subscription.all_tenants.get(customer__email="jean@dupont.example", product__slug="web-starter")
    first = Invoice.all_tenants.filter(lines__subscription_charge__subscription=jean).earliest("created_at")
    assert first.status == "paid" and first.credit_applied == first.total and jean.status == "active"
    pod = CloudPod.all_tenants.get()
    assert pod.status == PodStatus.RUNNING, pod.last_error
    assert Website.all_tenants.exists() and Domain.all_tenants.exists() and Zone.all_tenants.exists()
    assert Mailbox.all_tenants.exists()
    shop = Database.all_tenants.select_related("server").get(name="shop")
    assert (shop.server.port, shop.server.status) == (mariadb_server.port, "active"), shop.server.last_error
    assert shop.status == "active", shop.last_error
    assert shop.full_name in mariadb_server.databases()
    assert Job.all_tenants.filter(status=JobStatus.SUCCEEDED).exists()
    assert Job.all_tenants.filter(status=JobStatus.FAILED).count() >= 1
    assert SecurityEvent.objects.filter(type="login.failure").exists()
    assert "owner@demo.mpanel.local" in seeded and "TOTP secret:" in seeded


def test_a_second_run_changes_nothing_and_keeps_sessions(seeded, monkeypatch):
    login = APIClient().post(
        "/api/v1/auth/login/", {"email": "owner@demo.mpanel.local", "password": PASSWORD}, format="json"
    )
    assert login.status_code == 200, login.content
    key = login.json()["key"]
    before = _rows()
    call_command("seed_demo", "--no-qr", stdout=io.StringIO(), stderr=io.StringIO())
    after = _rows()
    assert {k: (before[k], after[k]) for k in before if before[k] != after[k]} == {}
    me = APIClient().get("/api/v1/auth/user/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert me.status_code == 200, me.content
    assert get_user_model().objects.get(email="operator@mpanel.local").check_password(PASSWORD)


def test_the_printed_totp_secret_logs_the_operator_into_the_admin(seeded):
    secret = re.search(r"TOTP secret: ([A-Z2-7]+)", seeded).group(1)
    device = TOTPDevice.objects.get(user__email="operator@mpanel.local", confirmed=True)
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/",
        {
            "username": "operator@mpanel.local",
            "password": PASSWORD,
            "otp_token": pyotp.TOTP(secret).now(),
            "otp_device": device.persistent_id,
        },
    )
    assert response.status_code == 302, re.findall(
        rb"errornote[^<]*<[^>]*>[^<]*|errorlist[^<]*<li>[^<]*", response.content
    )
    dashboard = client.get("/admin/")
    assert dashboard.status_code == 200
    assert b"Log in" not in dashboard.content


def test_without_a_database_server_the_seed_makes_none_and_says_so(transactional_db, monkeypatch):
    """`make run` with MPANEL_LOCAL_NODE_PACKAGES=0 starts no MariaDB and exports no MPANEL_DEMO_DB_*."""
    for name in ("ENGINE", "HOST", "PORT", "USER", "PASSWORD"):
        monkeypatch.delenv(f"MPANEL_DEMO_DB_{name}", raising=False)
    fx = make_tenant("Demo Hosting")
    seed = demo.Demo(password=PASSWORD, tenant=fx.tenant)
    demo.database(seed)
    assert not DatabaseServer.all_tenants.exists() and not Database.all_tenants.exists()
    assert seed.notes == [demo.NO_DB_SERVER] and "MPANEL_LOCAL_NODE_PACKAGES=0" in demo.NO_DB_SERVER
