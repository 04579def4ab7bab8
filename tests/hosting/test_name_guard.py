"""The platform-wide name guard of local nodes, under concurrency on PostgreSQL.

Every ``local`` node is this one machine (one PowerDNS, one Postfix/Dovecot), so a zone or mail
domain name served there belongs to one tenant only. Many tenants creating the same name at the
same moment: exactly one wins; the others get 409 ``name_taken`` (another tenant) or 400 (the same
tenant twice). The same holds for a parent and a child name (apps/names/claims.py locks their
registrable domain). The window between the check and the insert is widened on purpose (a slow step
right after the check), so without the lock the test fails every time rather than now and then."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from apps.common.exceptions import Conflict, InvalidInput
from apps.dns import services as dns_services
from apps.dns import validators
from apps.dns.models import Zone
from apps.jobs import services as job_services
from apps.mail import services as mail_services
from apps.mail.models import MailDomain
from apps.nodes.models import Node
from apps.tenancy.models import Tenant
from apps.tenancy.scoping import tenant_scope
from tests.billing.test_billing_concurrency import run_parallel

TENANTS = 8
PER_TENANT = 2  # the same tenant twice as well: its own unique constraint answers 400


@pytest.fixture
def creators(db, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    out = []
    for i in range(TENANTS):
        tenant = Tenant.objects.create(name=f"Racer {i}")
        with tenant_scope(tenant):
            node = Node.objects.create(tenant=tenant, hostname=f"local-{i}", roles=["dns", "mail"], vcpu=1,
                                       memory_mb=512, disk_gb=1, max_pods=0)  # fmt: skip
        out += [(tenant, node)] * PER_TENANT
    return out


def _slow_after_check(monkeypatch, module, name):
    """Sleep in a step that runs after the name check and before the insert."""
    original = getattr(module, name)

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, slow)


def _race(creators, create) -> tuple[list, list]:
    won, lost = [], []
    lock = threading.Lock()

    def attempt(item):
        tenant, node = item
        with tenant_scope(tenant):
            try:
                create(tenant, node)
                outcome = ("won", tenant.pk)
            except Conflict as exc:
                outcome = (409, exc.code)
            except InvalidInput as exc:
                outcome = (400, exc.field)
        with lock:
            (won if outcome[0] == "won" else lost).append(outcome)

    assert run_parallel(attempt, creators) == []
    return won, lost


@pytest.mark.django_db(transaction=True)
def test_one_tenant_gets_a_zone_name_however_many_race_for_it(creators, monkeypatch):
    _slow_after_check(monkeypatch, validators, "check_zone")
    won, lost = _race(creators, lambda tenant, node: dns_services.zone_create(tenant=tenant, name="race.example",
                                                                              node=node))  # fmt: skip
    assert len(won) == 1, (won, lost)
    winner = won[0][1]
    assert Zone.all_tenants.filter(name="race.example").count() == 1
    assert Zone.all_tenants.get(name="race.example").tenant_id == winner
    # The winner's second try is its own duplicate (400); every other tenant is refused (409).
    assert sorted(code for code, _ in lost) == [400] + [409] * (TENANTS * PER_TENANT - 2)
    assert all(detail == "name_taken" for code, detail in lost if code == 409)


@pytest.mark.django_db(transaction=True)
def test_one_tenant_gets_a_mail_domain_however_many_race_for_it(creators, monkeypatch, settings):
    settings.MPANEL_DKIM_KEY_BITS = 1024
    _slow_after_check(monkeypatch, mail_services, "_dkim_pair")
    won, lost = _race(creators, lambda tenant, node: mail_services.mail_domain_create(tenant=tenant,
                                                                                      name="race-mail.example",
                                                                                      node=node))  # fmt: skip
    assert len(won) == 1, (won, lost)
    assert MailDomain.all_tenants.filter(name="race-mail.example").count() == 1
    assert sorted(code for code, _ in lost) == [400] + [409] * (TENANTS * PER_TENANT - 2)


@pytest.mark.django_db(transaction=True)
def test_one_tenant_gets_a_tree_when_parents_and_children_race(creators, monkeypatch, settings):
    """Each tenant asks for the zone race-tree.example and the mail domain a.race-tree.example at
    once: related names of different tenants share the lock of their registrable domain, so exactly
    one tenant gets the tree (both its names) and every other try is 409 ``name_taken``."""
    settings.MPANEL_DKIM_KEY_BITS = 1024
    _slow_after_check(monkeypatch, validators, "check_zone")
    _slow_after_check(monkeypatch, mail_services, "_dkim_pair")
    tries: dict = {}
    guard = threading.Lock()

    def create(tenant, node):
        with guard:  # each tenant's first try asks for the parent, its second for the child
            tries[tenant.pk] = tries.get(tenant.pk, 0) + 1
            first = tries[tenant.pk] == 1
        if first:
            return dns_services.zone_create(tenant=tenant, name="race-tree.example", node=node)
        return mail_services.mail_domain_create(tenant=tenant, name="a.race-tree.example", node=node)

    won, lost = _race(creators, create)
    winners = {tenant for _, tenant in won}
    assert len(winners) == 1 and len(won) == PER_TENANT, (won, lost)
    assert lost == [(409, "name_taken")] * (TENANTS * PER_TENANT - PER_TENANT)
    assert set(Zone.all_tenants.values_list("tenant_id", flat=True)) == winners
    assert set(MailDomain.all_tenants.values_list("tenant_id", flat=True)) == winners
