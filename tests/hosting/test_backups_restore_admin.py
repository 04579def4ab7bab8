"""The operators' console restores a snapshot in place or into a new resource ("Restore to a new
resource", with the new name), through the same service as the API: the website's own rules apply and
a refusal is shown on the form with nothing made."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.backups.models import Restore
from apps.websites.models import Website
from tests.hosting.test_backups_admin import console  # noqa: F401  (fixture)
from tests.hosting.test_backups_api import snapshot_in

pytestmark = pytest.mark.django_db


def test_restore_to_a_new_site_from_the_admin_asks_the_name_then_runs_the_service(console, tenant_a):
    snap = snapshot_in(tenant_a, 3)
    page = console.get(reverse("admin:backups_snapshot_change", args=[snap.pk]))
    assert page.status_code == 200 and b"Restore to a new resource" in page.content
    action = reverse("admin:backups_snapshot_object_action", args=[snap.pk, "restore_new"])
    asked = console.get(action)
    assert asked.status_code == 200 and b'name="name"' in asked.content and not Restore.all_tenants.exists()

    sites = Website.all_tenants.count()
    refused = console.post(action, {"name": "not a hostname!"})
    assert refused.status_code == 200 and not Restore.all_tenants.exists()
    assert Website.all_tenants.count() == sites

    done = console.post(action, {"name": "copy-from-admin.example.com"})
    assert done.status_code == 302, done.content[:500]
    restore = Restore.all_tenants.get()
    assert not restore.in_place and restore.snapshot_id == snap.pk
    assert restore.target_label == "copy-from-admin.example.com"
    made = Website.all_tenants.get(pk=restore.target_id)
    assert made.primary_domain == "copy-from-admin.example.com" and made.pk != snap.resource_id
    event = AuditEvent.objects.get(action="backup.restore.create")
    assert event.actor_id == console.operator.pk and event.via == "operator"
