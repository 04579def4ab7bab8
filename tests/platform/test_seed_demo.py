"""`seed_demo`: the demo business behind `make run` fills every screen, through the services, once.

- Every screen has its rows: products with prices and a bundle, customers in several countries,
  invoices in every state (draft, open, overdue, paid, void, one with a credit note), active,
  past-due and cancelled subscriptions, a running CloudPod on a real runc, a website, a domain with
  its zone, a mailbox, a database, jobs that succeeded and one that failed, security events.
- Running it again changes nothing: the same rows in every table, and a session made between the
  two runs still works (no password reset, no session ended).
- The demo operator's TOTP device is made by the seed; a code from its printed secret logs the
  operator into the admin.
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

from apps.billing.models import CreditNote, Invoice, Subscription
from apps.catalog.models import BundleItem, Product
from apps.cloudpods.models import CloudPod, PodStatus
from apps.customers.models import Customer
from apps.databases.models import Database
from apps.dns.models import Zone
from apps.domains.models import Domain
from apps.jobs.models import Job, JobStatus
from apps.mail.models import Mailbox
from apps.security.models import SecurityEvent
from apps.websites.models import Website
from tests.pods_support import node_root  # noqa: F401  (fixture: a runc node root of this test's own)

PASSWORD = "mpanel-demo-2026"


@pytest.fixture
def seeded(transactional_db, node_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MPANEL_DNS_BACKEND", "bind")  # as `make run`: zone files under the node root
    out = io.StringIO()
    call_command("seed_demo", "--no-qr", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _rows() -> dict[str, int]:
    counts = {}
    for model in apps.get_models():
        manager = getattr(model, "all_tenants", model._default_manager)
        counts[model._meta.label] = manager.count()
    return counts


def test_every_screen_has_its_rows(seeded):
    assert Product.all_tenants.filter(prices__isnull=False).distinct().count() >= 5
    assert BundleItem.all_tenants.exists()
    assert {str(c) for c in Customer.all_tenants.values_list("country", flat=True)} >= {"GB", "US", "DE", "FR"}
    statuses = set(Invoice.all_tenants.values_list("status", flat=True))
    assert statuses >= {"draft", "open", "paid", "void"}
    assert Invoice.all_tenants.filter(status="open", due_date__lt=timezone.localdate()).exists()  # overdue
    assert CreditNote.all_tenants.exists()
    assert set(Subscription.all_tenants.values_list("status", flat=True)) >= {"active", "past_due", "cancelled"}
    pod = CloudPod.all_tenants.get()
    assert pod.status == PodStatus.RUNNING, pod.last_error
    assert Website.all_tenants.exists() and Domain.all_tenants.exists() and Zone.all_tenants.exists()
    assert Mailbox.all_tenants.exists() and Database.all_tenants.exists()
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
