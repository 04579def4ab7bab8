"""JSON bodies are held to the types the OpenAPI schema documents (apps/common/serializers.py).

What `make fuzz` reported as "schema-violating request accepted": DRF coerced `0` into a boolean, a
number into a string, a float into a decimal, `{}` into a country. Each is now a 400 on the field with nothing
written, and a walk over the schema's operations checks that every request body is covered.
"""

import datetime
import uuid
from decimal import Decimal

import pytest
from django.http import QueryDict
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers

from apps.catalog.models import TaxRate
from apps.common.schema import AutoSchema
from apps.common.serializers import Serializer, StrictJSONMixin
from apps.security.models import SecurityPolicy, ShieldPolicy
from apps.tenancy.models import Tenant
from tests.conftest import client_for, make_user


class Inner(Serializer):
    n = serializers.IntegerField()


class Sample(Serializer):
    flag = serializers.BooleanField(required=False)
    count = serializers.IntegerField(required=False)
    ratio = serializers.FloatField(required=False)
    amount = serializers.DecimalField(max_digits=10, decimal_places=2, required=False)
    name = serializers.CharField(required=False, allow_null=True)
    ref = serializers.UUIDField(required=False)
    day = serializers.DateField(required=False)
    kind = serializers.ChoiceField(choices=["a", "b"], required=False)
    level = serializers.ChoiceField(choices=[1, 2], required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    labels = serializers.DictField(child=serializers.IntegerField(), required=False)
    inner = Inner(required=False)
    many = Inner(many=True, required=False)
    anything = serializers.JSONField(required=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("flag", 0),
        ("flag", "true"),
        ("count", "5"),
        ("count", True),
        ("count", 1.5),
        ("ratio", "1.5"),
        ("ratio", False),
        ("amount", 19.99),  # a float is not exact: 19.999999999999999 arrives as 20.0
        ("amount", True),
        ("name", 5),
        ("name", {}),
        ("ref", 0),
        ("day", 20260101),
        ("kind", {}),
        ("kind", 1),
        ("level", "1"),
        ("tags", "a"),
        ("tags", ["a", 1]),
        ("labels", {"x": "1"}),
        ("labels", []),
        ("inner", []),
        ("inner", {"n": "1"}),
        ("many", {"n": 1}),
        ("many", [{"n": "1"}]),
    ],
)
def test_a_value_of_another_json_type_is_refused_on_its_field(field, value):
    serializer = Sample(data={field: value})
    assert not serializer.is_valid()
    assert list(serializer.errors) == [field], serializer.errors


def test_values_of_the_documented_types_pass():
    data = {
        "flag": False,
        "count": 5,
        "ratio": 2,
        "amount": 19,  # an integer is exact
        "name": None,
        "ref": str(uuid.uuid4()),
        "day": "2026-01-01",
        "kind": "a",
        "level": 2,
        "tags": ["a"],
        "labels": {"x": 1},
        "inner": {"n": 1},
        "many": [{"n": 1}, {"n": 2.0}],  # JSON Schema counts 2.0 as an integer
        "anything": [1, "x", {"y": None}],
    }
    serializer = Sample(data=data)
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["amount"] == Decimal("19")
    assert serializer.validated_data["many"] == [{"n": 1}, {"n": 2}]


def test_python_values_from_our_own_code_pass():
    """Services validate data they built: types JSON never produces are not a client's mistake."""
    serializer = Sample(data={"amount": Decimal("1.50"), "ref": uuid.uuid4(), "day": datetime.date(2026, 1, 1)})
    assert serializer.is_valid(), serializer.errors


def test_form_and_query_string_input_keeps_drfs_coercion():
    """The browsable API's forms and query strings only carry strings."""
    serializer = Sample(data=QueryDict("flag=true&count=5&amount=1.50&kind=a&level=1"))
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["flag"] is True and serializer.validated_data["count"] == 5


def _serializer_classes(serializer, seen: set) -> list[type]:
    """The serializer classes a request body is validated by: the body's own and every nested one."""
    if serializer is None or isinstance(serializer, dict | str):
        return []  # inline schemas of views that validate by hand are not serializers
    if isinstance(serializer, serializers.ListSerializer):
        serializer = serializer.child
    cls = serializer if isinstance(serializer, type) else type(serializer)
    if not issubclass(cls, serializers.BaseSerializer) or cls in seen:
        return []
    seen.add(cls)
    found = [cls]
    instance = serializer if not isinstance(serializer, type) else cls()
    if isinstance(instance, serializers.Serializer):
        for field in instance.fields.values():
            child = getattr(field, "child", None)
            nested = field if isinstance(field, serializers.BaseSerializer) else child
            if isinstance(nested, serializers.BaseSerializer) and not field.read_only:
                found += _serializer_classes(nested, seen)
    return found


def test_every_documented_request_body_is_held_to_its_types(monkeypatch):
    """Walks the schema generation itself: a module added later is covered, and fails here if it
    validates a JSON body with a serializer that coerces."""
    bodies = []
    original = AutoSchema._get_request_for_media_type

    # Every request body of every operation passes here, @extend_schema(request=...) ones included.
    def recording(self, serializer, direction="request"):
        if direction == "request":
            bodies.append((self.method, self.path, serializer))
        return original(self, serializer, direction)

    monkeypatch.setattr(AutoSchema, "_get_request_for_media_type", recording)
    SchemaGenerator().get_schema(request=None, public=True)

    checked, lenient = set(), []
    for method, path, serializer in bodies:
        for cls in _serializer_classes(serializer, checked):
            if not issubclass(cls, StrictJSONMixin):
                lenient.append(f"{method} {path}: {cls.__module__}.{cls.__qualname__}")
    assert len(bodies) > 100 and len(checked) > 50
    assert not lenient, "\n".join(sorted(set(lenient)))


# -- what the fuzzer found, through the API --------------------------------------------------------


@pytest.mark.django_db
def test_a_tenant_with_an_object_for_a_country_is_refused():
    user = make_user("founder@example.test")
    client = client_for(user)
    response = client.post(reverse("tenant-list"), {"name": "Acme", "country": {}}, format="json")
    assert response.status_code == 400 and "country" in response.json(), response.content
    assert not Tenant.objects.filter(name="Acme").exists()
    response = client.post(reverse("tenant-list"), {"name": "Acme", "country": "DE"}, format="json")
    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_a_tax_rate_as_a_float_is_refused(tenant_a):
    client = client_for(tenant_a.owner, tenant_a.tenant)
    body = {"name": "VAT", "rate": 19.5, "country": "DE"}
    response = client.post(reverse("tax-rate-list"), body, format="json")
    assert response.status_code == 400 and list(response.json()) == ["rate"], response.content
    with tenant_a.scope():
        assert not TaxRate.objects.exists()
    response = client.post(reverse("tax-rate-list"), {**body, "rate": "19.50"}, format="json")
    assert response.status_code == 201, response.content
    response = client.post(reverse("tax-rate-list"), {**body, "rate": 7, "tax_class": "reduced"}, format="json")
    assert response.status_code == 201 and response.json()["rate"].startswith("7."), response.content


@pytest.mark.django_db
def test_a_number_for_a_string_and_zero_for_a_boolean_are_refused(tenant_a):
    client = client_for(tenant_a.owner, tenant_a.tenant)
    response = client.post(reverse("shield-policy-list"), {"site": 0}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["site"], response.content
    with tenant_a.scope():
        assert not ShieldPolicy.objects.exists()

    url = reverse("security-policy")
    before = client.get(url).json()
    response = client.put(url, {**before, "require_2fa": 0}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["require_2fa"], response.content
    assert client.get(url).json() == before
    with tenant_a.scope():
        assert not SecurityPolicy.objects.filter(require_2fa=True).exists()
