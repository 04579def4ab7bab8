"""Issue 21: a serializer's fields are copied from ones built once per class
(``apps.common.serializers.PrototypeFieldsMixin``) instead of DRF building them anew for each serializer.

Every serializer of the project is checked against DRF's own build (the same fields, in the same order,
made from the same arguments); a serializer's copies are its own (changing one changes no other, nor the
ones made after it); and requests that write (valid and refused) answer the same either way.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil

import pytest
from django.apps import apps as django_apps
from django.core.validators import MaxLengthValidator

import apps as project_apps
from apps.common import serializers as common
from apps.customers.serializers import CustomerSerializer
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from tests.conftest import client_for


def project_serializers() -> list[type]:
    for config in django_apps.get_app_configs():
        if not config.name.startswith("apps."):
            continue
        for module in pkgutil.iter_modules(importlib.import_module(config.name).__path__):
            if module.name in ("serializers", "api") or module.name.endswith("_serializers"):
                importlib.import_module(f"{config.name}.{module.name}")
    found, todo = [], [common.Serializer, common.ModelSerializer]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith(project_apps.__name__ + ".") and sub not in found:
                found.append(sub)
    return found


def drf_fields(serializer) -> dict:
    return super(common.PrototypeFieldsMixin, serializer).get_fields()


def described(fields: dict) -> list[tuple[str, str]]:
    return [(name, repr(field)) for name, field in fields.items()]


def test_every_serializer_has_the_fields_drf_builds():
    checked = 0
    for cls in project_serializers():
        meta = getattr(cls, "Meta", None)
        if issubclass(cls, common.ModelSerializer) and getattr(meta, "model", None) is None:
            continue  # a base without a model: DRF cannot build it either
        first, second = cls().get_fields(), cls().get_fields()  # the second from the kept prototypes
        expected = described(drf_fields(cls()))
        assert described(first) == expected, cls
        assert described(second) == expected, cls
        for name, field in second.items():
            assert field is not first[name], (cls, name)
        checked += 1
    assert checked > 60  # every module's serializers, not a few


def test_a_serializers_fields_are_its_own():
    one, two = CustomerSerializer(), CustomerSerializer()
    for name, field in one.fields.items():
        assert field.parent is one and two.fields[name].parent is two
        assert field is not two.fields[name]
    one.fields["name"].read_only = True
    one.fields["email"].validators.append(MaxLengthValidator(3))
    one.fields["currency"].choices = [("EUR", "EUR")]
    one.fields["notes"].default = ["changed"]
    later = CustomerSerializer(data={"email": "a@example.test"})
    for other in (two, later):
        assert other.fields["name"].read_only is False
        assert not any(getattr(v, "limit_value", None) == 3 for v in other.fields["email"].validators)
        assert "USD" in other.fields["currency"].choices
        assert other.fields["notes"].default is not one.fields["notes"].default
    assert later.is_valid() is False and "name" in later.errors  # its own, required, name field


def test_a_field_holding_fields_is_deep_copied():
    class Inner(common.Serializer):
        code = common.drf.CharField(max_length=5)

    class Outer(common.Serializer):
        inner = Inner()
        items = common.drf.ListField(child=common.drf.ChoiceField(choices=["a", "b"]))
        tags = common.drf.CharField(default=[], required=False)
        owner = common.drf.PrimaryKeyRelatedField(queryset=Tenant.objects.all(), required=False)

    one, two = Outer(), Outer()
    assert one.fields["owner"].queryset is not two.fields["owner"].queryset  # a clone each (no shared rows)
    assert one.fields["owner"].queryset.model is Tenant
    assert one.fields["inner"] is not two.fields["inner"]
    assert one.fields["inner"].fields["code"] is not two.fields["inner"].fields["code"]
    assert one.fields["items"].child is not two.fields["items"].child
    assert one.fields["items"].child.parent is one.fields["items"]
    assert one.fields["tags"].default is not two.fields["tags"].default
    assert Outer(data={"inner": {"code": "toolong"}, "items": ["c"]}).is_valid() is False


@contextlib.contextmanager
def built_by_drf():
    patch = pytest.MonkeyPatch()
    try:
        patch.setattr(common.PrototypeFieldsMixin, "get_fields", drf_fields)
        yield
    finally:
        patch.undo()


def without_times(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("id", "created_at", "updated_at")}


@pytest.mark.django_db
def test_writes_answer_alike(tenant_a):
    client = client_for(tenant_a.users[Role.OWNER], tenant_a.tenant)
    refused = [
        {},
        {"name": "", "email": "not-an-email"},
        {"name": 5, "email": "a@example.test"},
        {"name": "x" * 300, "email": "a@example.test", "country": "ZZ", "currency": "XXX"},
        {"name": "Kind", "email": "k@example.test", "kind": "robot", "status": "gone"},
    ]
    for payload in refused:
        fast = client.post("/api/v1/customers/", payload, format="json")
        with built_by_drf():
            general = client.post("/api/v1/customers/", payload, format="json")
        assert fast.status_code == general.status_code == 400, payload
        assert fast.json() == general.json(), payload
    made = []
    for i, way in enumerate((contextlib.nullcontext, built_by_drf)):
        with way():
            answer = client.post("/api/v1/customers/", {"name": "Acme", "email": f"acme{i}@example.test",
                                                        "country": "DE", "currency": "EUR"}, format="json")  # fmt: skip
            assert answer.status_code == 201, answer.content
            made.append(answer.json())
            patched = client.patch(f"/api/v1/customers/{answer.json()['id']}/", {"company": "Acme GmbH"}, format="json")
            assert patched.status_code == 200
            made.append(patched.json())
    assert without_times(made[0]) | {"email": ""} == without_times(made[2]) | {"email": ""}
    assert without_times(made[1]) | {"email": ""} == without_times(made[3]) | {"email": ""}
