"""Audit by declaration: a model names its audited fields once; services say only what happened."""

import pytest
from django.db import transaction

from apps.audit import services as audit
from apps.audit.models import AuditEvent
from apps.tenancy.models import Tenant
from apps.tenancy.scoping import all_tenants

pytestmark = pytest.mark.django_db


def _events(action):
    with all_tenants():
        return list(AuditEvent.objects.filter(action=action).order_by("created_at"))


def test_snapshot_takes_the_models_declared_fields():
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    assert set(audit.snapshot(tenant)) == {"name", "default_currency", "country", "status"}
    assert set(audit.snapshot(tenant, ["name"])) == {"name"}


def test_created_change_and_deleted_record_before_and_after(tenant_a):
    tenant = tenant_a.tenant
    old_name = tenant.name
    audit.created(tenant, "test.create", actor=tenant_a.owner)
    with audit.change(tenant, "test.update", actor=tenant_a.owner):
        tenant.name = "Renamed"
        tenant.save()
    audit.deleted(tenant, "test.delete", actor=tenant_a.owner)

    (made,) = _events("test.create")
    assert made.changes["name"] == [None, old_name] and "slug" not in made.changes
    assert made.actor_id == tenant_a.owner.pk
    (changed,) = _events("test.update")
    assert changed.changes == {"name": [old_name, "Renamed"]}
    (gone,) = _events("test.delete")
    assert gone.changes["name"] == ["Renamed", None]


def test_a_skipped_change_and_a_failed_block_record_nothing(tenant_a):
    tenant = tenant_a.tenant
    with audit.change(tenant, "test.noop") as pending:
        pending.skip()
    with pytest.raises(RuntimeError), transaction.atomic(), audit.change(tenant, "test.boom"):
        tenant.name = "Never"
        raise RuntimeError("the write failed")
    assert _events("test.noop") == [] and _events("test.boom") == []


def test_secrets_are_never_recorded_even_when_named(tenant_a):
    user = tenant_a.owner
    assert set(audit.snapshot(user, ["email", "password"])) == {"email"}


def test_a_mark_says_what_the_fields_cannot_show(tenant_a):
    tenant = tenant_a.tenant
    with audit.change(tenant, "test.mark") as pending:
        pending.mark(password="changed")
    (event,) = _events("test.mark")
    assert event.changes == {"password": [None, "changed"]}


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("password_hash", True),
        ("admin_password_encrypted", True),
        ("dkim_secret_pem", True),
        ("key_hash", True),
        ("token_hash", True),
        ("secret_salt", True),
        ("min_password_length", False),
        ("password_changed_at", False),
        ("secret_previous_until", False),
        ("name", False),
    ],
)
def test_secret_fields_are_known_by_name(name, secret):
    assert audit.is_secret(name) is secret


def test_all_fields_takes_every_field_whatever_the_model_declares():
    tenant = Tenant(name="Acme", slug="acme")
    assert {"name", "slug", "status"} <= set(audit.snapshot(tenant, audit.ALL_FIELDS))


def test_the_system_is_recorded_as_no_actor_even_inside_a_request(tenant_a):
    from apps.common import context

    tenant = tenant_a.tenant
    token = context.activate(context.RequestContext(actor=tenant_a.owner))
    try:
        audit.created(tenant, "test.by_request")
        audit.created(tenant, "test.by_system", actor=audit.SYSTEM)
    finally:
        context.reset(token)
    assert _events("test.by_request")[0].actor_id == tenant_a.owner.pk
    assert _events("test.by_system")[0].actor_id is None


def test_a_tenants_own_events_belong_to_it_and_a_row_s_to_its_tenant(tenant_a):
    """``tenant_of``: a model that declares ``audit_is_tenant`` owns its events; other rows give
    their ``tenant``; audit names no model of tenancy's to know it."""
    tenant = tenant_a.tenant
    assert audit.tenant_of(tenant) == tenant
    assert audit.tenant_of(None) is None
    assert audit.tenant_of(tenant_a.owner) is None  # a user belongs to no one tenant
    assert audit.tenant_of(tenant.memberships.first()) == tenant
    event = audit.created(tenant, "test.tenant_create", marks={"years": 2})
    assert event.tenant_id == tenant.pk
    assert event.changes["years"] == [None, 2] and event.changes["name"] == [None, tenant.name]


def test_an_event_about_a_row_read_without_its_tenant_costs_no_query_for_it(tenant_a, django_assert_num_queries):
    from apps.customers.models import Customer

    with tenant_a.scope():
        made = Customer.objects.create(tenant=tenant_a.tenant, name="Ada", email="ada@example.com")
        row = Customer.objects.get(pk=made.pk)  # its tenant not loaded
    with django_assert_num_queries(1):  # the event's INSERT, no SELECT of the tenant
        audit.record(action="test.touch", obj=row)
    (event,) = _events("test.touch")
    assert event.tenant_id == tenant_a.tenant.pk and event.object_id == str(made.pk)
    assert audit.tenant_key(tenant_a.tenant) == tenant_a.tenant.pk  # a tenant's own events are its own
