"""The catalog in the operators' console: the same checks tests/console/test_admin.py makes for every model
of the foundation's apps, plus the inlines (prices, bundle components) and their rules."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.catalog.models import BundleItem, Price, Product, TaxRate
from apps.tenancy.models import Tenant
from tests.conftest import PASSWORD, admin_login, client_for
from tests.console.test_admin import form_data, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("operator@mpanel.test", PASSWORD)


@pytest.fixture
def console(client, operator):
    return admin_login(client, operator)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def catalog_rows(tenant_a):
    with tenant_a.scope():
        part = Product.objects.create(name="Part", slug="part", type="addon")
        product = Product.objects.create(name="Pack", slug="pack", type="hosting_plan", visibility="public")
        price = Price.objects.create(product=product, currency="EUR", cycle="monthly", amount=Decimal("9.99"))
        item = BundleItem.objects.create(bundle=product, component=part, quantity=2)
        rate = TaxRate.objects.create(country="DE", tax_class="standard", rate=Decimal("19"), name="VAT DE")
    return {Product: product, TaxRate: rate, "part": part, "price": price, "item": item}


def test_catalog_admins_load_and_show_the_tenant(console, catalog_rows, tenant_a, tenant_b):
    registry = {m: a for m, a in admin.site._registry.items() if m._meta.app_label == "catalog"}
    assert set(registry) == {Product, TaxRate}
    for model, model_admin in registry.items():
        obj = catalog_rows[model]
        assert model_admin.search_fields and model_admin.list_filter and len(model_admin.list_display) > 1
        changelist = url(model, "changelist")
        response = console.get(changelist)
        assert response.status_code == 200
        assert obj.pk in [r.pk for r in response.context["cl"].result_list]
        assert "column-tenant" in response.content.decode()
        assert console.get(changelist, {"q": "x"}).status_code == 200
        assert console.get(changelist, {"q": str(obj.pk)}).status_code == 200
        shown = console.get(changelist, {"tenant__id__exact": str(tenant_a.tenant.pk)}).context["cl"].result_list
        assert obj.pk in [r.pk for r in shown]
        hidden = console.get(changelist, {"tenant__id__exact": str(tenant_b.tenant.pk)}).context["cl"].result_list
        assert obj.pk not in [r.pk for r in hidden]
        for view in ("change", "history"):
            assert console.get(url(model, view, obj.pk)).status_code == 200, (model, view)
        assert console.get(url(model, "add")).status_code == 200


def test_product_changelist_query_count_does_not_grow(console, db):
    tenants = [Tenant.objects.create(name=f"T{i}") for i in range(3)]
    changelist = url(Product, "changelist")
    console.get(changelist)

    def make(n, start):
        for i in range(start, start + n):
            Product.all_tenants.create(tenant=tenants[i % 3], name=f"P{i}", slug=f"p{i}", type="addon")

    make(5, 0)
    with CaptureQueriesContext(connection) as five:
        console.get(changelist)
    make(20, 5)
    with CaptureQueriesContext(connection) as twenty_five:
        response = console.get(changelist)
    assert len(response.context["cl"].result_list) == 25
    assert len(twenty_five) == len(five)


def test_product_added_with_prices_and_components_is_audited(console, operator, catalog_rows, tenant_a):
    add_url = url(Product, "add")
    data = form_data(console.get(add_url))
    data.update(
        {
            "tenant": str(tenant_a.tenant.pk),
            "name": "Combo",
            "slug": "combo",
            "type": "hosting_plan",
            "tax_class": "standard",
            "visibility": "public",
            "config": "{}",
            "metering": "null",
            "bundle_discount_percent": "10",
            "prices-TOTAL_FORMS": "1",
            "prices-0-currency": "JPY",
            "prices-0-cycle": "annual",
            "prices-0-amount": "12000",
            "prices-0-setup_fee": "0",
            "bundle_items-TOTAL_FORMS": "1",
            "bundle_items-0-component": str(catalog_rows["part"].pk),
            "bundle_items-0-quantity": "3",
        }
    )
    response = console.post(add_url, data)
    assert response.status_code == 302, response.context and [
        response.context["adminform"].form.errors,
        [f.errors for i in response.context["inline_admin_formsets"] for f in i.formset.forms],
    ]
    product = Product.all_tenants.get(slug="combo")
    price = Price.all_tenants.get(product=product)
    item = BundleItem.all_tenants.get(bundle=product)
    assert price.tenant_id == item.tenant_id == tenant_a.tenant.pk
    # Saved by services.product_create, as the API does: one event names the prices and the components.
    event = AuditEvent.objects.get(action="product.create", object_id=str(product.pk))
    assert event.via == "admin" and event.actor_id == operator.pk and event.tenant_id == tenant_a.tenant.pk
    after = {k: v[1] for k, v in event.changes.items()}
    assert after["prices"] == [f"JPY annual {price.amount} setup {price.setup_fee}"]
    assert after["bundle_items"] == [f"{item.quantity} x {catalog_rows['part'].pk}"]


@pytest.mark.parametrize(
    "inline",
    [
        {"prices-0-currency": "JPY", "prices-0-cycle": "monthly", "prices-0-amount": "10.5"},
        {"prices-0-currency": "EUR", "prices-0-cycle": "monthly", "prices-0-amount": "-1"},
        {"bundle_items-0-component": "self", "bundle_items-0-quantity": "1"},
        {"bundle_items-0-component": "retired", "bundle_items-0-quantity": "1"},
        {"bundle_items-0-component": "foreign", "bundle_items-0-quantity": "1"},
        {"bundle_items-0-component": "bundle", "bundle_items-0-quantity": "1"},
    ],
)
def test_product_admin_refuses_bad_inline_rows_as_form_errors(console, catalog_rows, tenant_a, tenant_b, inline):
    with tenant_a.scope():
        target = Product.objects.create(name="Target", slug="target", type="addon")
        retired = Product.objects.create(name="Old", slug="old", type="addon", visibility="retired")
    with tenant_b.scope():
        foreign = Product.objects.create(name="Foreign", slug="foreign", type="addon")
    ids = {"self": target.pk, "retired": retired.pk, "foreign": foreign.pk, "bundle": catalog_rows[Product].pk}
    change_url = url(Product, "change", target.pk)
    data = form_data(console.get(change_url))
    prefix = "prices" if any(k.startswith("prices") for k in inline) else "bundle_items"
    data[f"{prefix}-TOTAL_FORMS"] = "1"
    for key, value in inline.items():
        data[key] = str(ids.get(value, value))
    response = console.post(change_url, data)
    assert response.status_code == 200, "the page is shown again with the error"
    errors = [f.errors for i in response.context["inline_admin_formsets"] for f in i.formset.forms]
    assert any(errors), errors
    assert not Price.all_tenants.filter(product=target).exists()
    assert not BundleItem.all_tenants.filter(bundle=target).exists()


def test_an_admin_edit_drops_the_public_catalog_cache(
    console, catalog_rows, tenant_a, django_capture_on_commit_callbacks
):
    params = {"tenant": tenant_a.tenant.slug}
    assert [p["name"] for p in client_for().get("/api/v1/products", params).json()["results"]] == ["Pack"]
    product = catalog_rows[Product]
    change_url = url(Product, "change", product.pk)
    data = form_data(console.get(change_url))
    data["name"] = "Pack deluxe"
    with django_capture_on_commit_callbacks(execute=True):
        assert console.post(change_url, data).status_code == 302
    assert [p["name"] for p in client_for().get("/api/v1/products", params).json()["results"]] == ["Pack deluxe"]


def test_tax_rate_admin_refuses_exempt_class_and_duplicates(console, catalog_rows, tenant_a):
    add_url = url(TaxRate, "add")
    for tax_class, country in (("exempt", "FR"), ("standard", "DE")):
        data = form_data(console.get(add_url))
        data.update(
            {"tenant": str(tenant_a.tenant.pk), "country": country, "tax_class": tax_class, "rate": "5", "name": "X"}
        )
        response = console.post(add_url, data)
        assert response.status_code == 200 and response.context["adminform"].form.errors, (tax_class, country)
    assert TaxRate.all_tenants.count() == 1
