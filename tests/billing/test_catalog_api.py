"""The product catalog API (/api/v1/billing/products, /billing/tax-rates) and the public catalog."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache
from django.urls import reverse
from django_countries import countries

from apps.audit.models import AuditEvent
from apps.catalog import services
from apps.catalog.api import ProductViewSet, TaxRateViewSet
from apps.catalog.models import BundleItem, Price, Product, TaxRate
from apps.common.exceptions import InvalidInput
from apps.tenancy.models import Tenant
from apps.tenancy.roles import ORDERED, Role
from apps.tenancy.scoping import all_tenants
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for

COUNTRY_CODES = [code for code, _name in countries]


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The public catalog and throttles live in the cache; tests reuse tenant slugs."""
    cache.clear()
    yield
    cache.clear()


def product_in(fx, name="Plan", prices=(("EUR", "monthly", "9.99", "0"),), **extra) -> Product:
    with fx.scope():
        product = Product.objects.create(
            tenant=fx.tenant,
            name=name,
            slug=extra.pop("slug", None) or f"{name.lower().replace(' ', '-')}-{Product.objects.count()}",
            type=extra.pop("type", "hosting_plan"),
            **extra,
        )
        for currency, cycle, amount, setup in prices:
            Price.objects.create(
                tenant=fx.tenant,
                product=product,
                currency=currency,
                cycle=cycle,
                amount=Decimal(amount),
                setup_fee=Decimal(setup),
            )
        return product


def bundle_of(fx, name, components, percent="0", prices=(), **extra) -> Product:
    bundle = product_in(fx, name, prices=prices, bundle_discount_percent=Decimal(percent), **extra)
    with fx.scope():
        for component, quantity in components:
            BundleItem.objects.create(tenant=fx.tenant, bundle=bundle, component=component, quantity=quantity)
    return bundle


def tax_rate_in(fx, country, rate, tax_class="standard", name=None) -> TaxRate:
    with fx.scope():
        return TaxRate.objects.create(
            tenant=fx.tenant, country=country, tax_class=tax_class, rate=Decimal(rate), name=name or f"VAT {country}"
        )


def pricing(client, product, **params):
    return client.get(reverse("product-pricing", kwargs={"pk": product.pk}), params)


def rows_by_key(data):
    return {(r["currency"], r["cycle"]): r for r in data["rows"]}


# --- the generic API tests ---------------------------------------------------------------------------


class TestProductApi(ApiTestCase):
    viewset = ProductViewSet
    basename = "product"
    roles = {
        "list": Role.BILLING,
        "retrieve": Role.BILLING,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
    }

    def make(self, fx, seq):
        product = product_in(fx, f"Plan {seq}", slug=f"plan-{seq}", visibility="public")
        if seq % 2:  # every other one is a bundle, so the list also reads components' prices
            component = product_in(fx, f"Addon {seq}", slug=f"addon-{seq}", type="addon")
            with fx.scope():
                BundleItem.objects.create(tenant=fx.tenant, bundle=product, component=component, quantity=2)
        return product

    def create_payload(self, fx, seq):
        return {
            "name": f"New plan {seq}",
            "type": "hosting_plan",
            "visibility": "public",
            "prices": [
                {"currency": "EUR", "cycle": "monthly", "amount": "9.99"},
                {"currency": "JPY", "cycle": "annual", "amount": "12000", "setup_fee": "500"},
            ],
        }

    def update_payload(self, fx, obj, seq):
        return {
            "name": f"Renamed {seq}",
            "type": "hosting_plan",
            "prices": [{"currency": "USD", "cycle": "monthly", "amount": "12.50", "setup_fee": "1.00"}],
        }


class TestTaxRateApi(ApiTestCase):
    viewset = TaxRateViewSet
    basename = "tax-rate"
    roles = {
        "list": Role.BILLING,
        "retrieve": Role.BILLING,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    @staticmethod
    def _key(seq):
        return COUNTRY_CODES[seq % len(COUNTRY_CODES)], ("standard", "reduced")[(seq // len(COUNTRY_CODES)) % 2]

    def make(self, fx, seq):
        country, tax_class = self._key(seq)
        return tax_rate_in(fx, country, "19", tax_class=tax_class)

    def create_payload(self, fx, seq):
        country, tax_class = self._key(seq)
        return {"country": country, "tax_class": tax_class, "rate": "7.5", "name": f"Tax {seq}"}

    def update_payload(self, fx, obj, seq):
        return {"country": obj.country.code, "tax_class": obj.tax_class, "rate": "20", "name": f"Changed {seq}"}


# --- products: shape, roles of the extra actions, validation ----------------------------------------


@pytest.mark.django_db
class TestProducts:
    def test_create_answers_the_product_with_its_prices(self, tenant_a):
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = client.post(
            "/api/v1/billing/products",
            {
                "name": "  Small pod ",
                "type": "cloudpod_plan",
                "config": {"plan": "small"},
                "stock": 5,
                "metering": {"unit": "GB", "unit_prices": {"EUR": "0.05", "KWD": "0.015"}},
                "prices": [
                    {"currency": "EUR", "cycle": "monthly", "amount": "9.99", "setup_fee": "5"},
                    {"currency": "JPY", "cycle": "monthly", "amount": "1500"},
                    {"currency": "KWD", "cycle": "annual", "amount": "15.005"},
                ],
            },
            format="json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["name"] == "Small pod"
        assert body["slug"] == "small-pod"
        assert body["visibility"] == "hidden" and body["tax_class"] == "standard"
        assert body["is_bundle"] is False
        assert body["config"] == {"plan": "small"}
        assert body["metering"] == {"unit": "GB", "unit_prices": {"EUR": "0.05", "KWD": "0.015"}}
        prices = {(p["currency"], p["cycle"]): p for p in body["prices"]}
        assert prices[("EUR", "monthly")] == {
            "currency": "EUR",
            "cycle": "monthly",
            "amount": "9.99",
            "setup_fee": "5.00",
        }
        assert prices[("JPY", "monthly")]["amount"] == "1500"
        assert prices[("KWD", "annual")]["amount"] == "15.005"
        # A second product with the same name gets the next free slug.
        again = client.post("/api/v1/billing/products", {"name": "Small pod", "type": "addon"}, format="json")
        assert again.json()["slug"] == "small-pod-2"

    def test_put_replaces_prices_and_keeps_the_unchanged_ones(self, tenant_a):
        product = product_in(tenant_a, prices=[("EUR", "monthly", "9.99", "0"), ("EUR", "annual", "99.00", "0")])
        with tenant_a.scope():
            kept = Price.objects.get(product=product, cycle="monthly")
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        url = reverse("product-detail", kwargs={"pk": product.pk})
        response = client.put(
            url,
            {
                "name": "Plan",
                "type": "hosting_plan",
                "prices": [
                    {"currency": "EUR", "cycle": "monthly", "amount": "9.99"},
                    {"currency": "USD", "cycle": "monthly", "amount": "10.99"},
                ],
            },
            format="json",
        )
        assert response.status_code == 200, response.content
        with tenant_a.scope():
            stored = {(p.currency, p.cycle): p for p in Price.objects.filter(product=product)}
        assert set(stored) == {("EUR", "monthly"), ("USD", "monthly")}
        assert stored[("EUR", "monthly")].pk == kept.pk
        # PATCH without prices leaves them alone.
        assert client.patch(url, {"description": "Fast"}, format="json").status_code == 200
        with tenant_a.scope():
            assert Price.objects.filter(product=product).count() == 2
        changes = [e.changes for e in AuditEvent.objects.filter(action="product.update", object_id=str(product.pk))]
        assert {"prices"} <= set(changes[0]) | set(changes[1])
        assert any(
            c.get("prices", [None, None])[1] == ["EUR monthly 9.990 setup 0.000", "USD monthly 10.990 setup 0.000"]
            for c in changes
        )

    @pytest.mark.parametrize(
        "bad",
        [
            {"prices": [{"currency": "XXX", "cycle": "monthly", "amount": "1"}]},
            {"prices": [{"currency": "EUR", "cycle": "weekly", "amount": "1"}]},
            {"prices": [{"currency": "EUR", "cycle": "monthly", "amount": "-1"}]},
            {"prices": [{"currency": "EUR", "cycle": "monthly", "amount": "1", "setup_fee": "-0.01"}]},
            {"prices": [{"currency": "EUR", "cycle": "monthly", "amount": "1.001"}]},
            {"prices": [{"currency": "JPY", "cycle": "monthly", "amount": "1000.5"}]},
            {"prices": [{"currency": "KWD", "cycle": "monthly", "amount": "1.2345"}]},
            {"prices": [{"currency": "EUR", "cycle": "monthly", "amount": "abc"}]},
            {"prices": [{"currency": "EUR", "cycle": "monthly", "amount": "NaN"}]},
            {"prices": [{"currency": "EUR", "cycle": "monthly", "amount": "1e30"}]},
            {"prices": [{"currency": "EUR", "cycle": "monthly"}]},
            {
                "prices": [
                    {"currency": "EUR", "cycle": "monthly", "amount": "1"},
                    {"currency": "EUR", "cycle": "monthly", "amount": "2"},
                ]
            },
            {"prices": "EUR 1"},
            {"prices": ["EUR"]},
            {"prices": [None]},
            {"name": "   "},
            {"type": "spaceship"},
            {"visibility": "secret"},
            {"tax_class": "luxury"},
            {"stock": -1},
            {"stock": "lots"},
            {"config": ["not", "an", "object"]},
            {"metering": "GB"},
            {"metering": {"unit": "GB"}},
            {"metering": {"unit": "GB", "unit_prices": {"XXX": "1"}}},
            {"metering": {"unit": "GB", "unit_prices": {"EUR": "-1"}}},
            {"metering": {"unit": "GB", "unit_prices": {"EUR": "0.0000001"}}},
            {"metering": {"unit": "", "unit_prices": {"EUR": "1"}}},
            {"metering": {"unit": "GB", "unit_prices": {"EUR": "1"}, "secret": 1}},
            {"bundle_discount_percent": "101"},
            {"bundle_discount_percent": "-1"},
            {"slug": "not a slug"},
            {"bundle_items": [{"product": "not-a-uuid"}]},
            {"bundle_items": [{"product": "00000000-0000-0000-0000-000000000000"}]},
            {"bundle_items": "x"},
            {"bundle_items": [{"product": "11111111-1111-1111-1111-111111111111", "quantity": "many"}]},
            {"bundle_items": [{"quantity": 2}]},
            {"prices": [{"currency": "EUR", "cycle": "monthly", "amount": {"x": 1}}]},
            {"prices": [{"currency": "EUR", "cycle": "monthly", "amount": True}]},
            {"prices": [{"currency": ["EUR"], "cycle": "monthly", "amount": "1"}]},
            {"stock": 10**12},
            {"name": "x" * 300},
            {"slug": "x" * 200},
            {"type": None},
        ],
    )
    def test_invalid_input_is_400_and_writes_nothing(self, tenant_a, bad):
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        payload = {"name": "Broken", "type": "addon", **bad}
        response = client.post("/api/v1/billing/products", payload, format="json")
        assert response.status_code == 400, (bad, response.status_code, response.content[:300])
        with tenant_a.scope():
            assert not Product.objects.exists()
            assert not Price.objects.exists()

    def test_a_body_that_is_not_an_object_is_400(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        for body in ([], "text", 5):
            assert client.post("/api/v1/billing/products", body, format="json").status_code == 400
        product = product_in(tenant_a)
        url = reverse("product-detail", kwargs={"pk": product.pk})
        assert client.patch(url, {"prices": [{"currency": "EUR"}]}, format="json").status_code == 400
        assert client.put(url, {"prices": []}, format="json").status_code == 400  # PUT needs name and type
        with tenant_a.scope():
            assert Price.objects.filter(product=product).count() == 1

    def test_duplicate_slug_is_400(self, tenant_a, tenant_b):
        product_in(tenant_a, slug="taken")
        product_in(tenant_b, slug="mine")
        client = client_for(tenant_a.owner, tenant_a.tenant)
        response = client.post("/api/v1/billing/products", {"name": "X", "type": "addon", "slug": "taken"})
        assert response.status_code == 400 and "slug" in response.json()
        # Another tenant's slug is free here.
        assert (
            client.post("/api/v1/billing/products", {"name": "X", "type": "addon", "slug": "mine"}).status_code == 201
        )

    def test_bundle_rules(self, tenant_a, tenant_b):
        a = product_in(tenant_a, "A")
        b = product_in(tenant_a, "B")
        retired = product_in(tenant_a, "Old", visibility="retired")
        foreign = product_in(tenant_b, "Foreign")
        inner = bundle_of(tenant_a, "Inner", [(a, 1)])
        client = client_for(tenant_a.owner, tenant_a.tenant)
        url = "/api/v1/billing/products"

        def items(*products, quantity=1):
            return [{"product": str(p.pk), "quantity": quantity} for p in products]

        for bad in (
            items(retired),  # a retired component
            items(foreign),  # another tenant's product: as unknown
            items(inner),  # a bundle inside a bundle
            items(a, a),  # twice
            items(a, quantity=0),
        ):
            response = client.post(url, {"name": "Bundle", "type": "hosting_plan", "bundle_items": bad}, format="json")
            assert response.status_code == 400, (bad, response.content)
            assert "bundle_items" in response.json()
        ok = client.post(url, {"name": "Bundle", "type": "hosting_plan", "bundle_items": items(a, b)}, format="json")
        assert ok.status_code == 201, ok.content
        bundle_id = ok.json()["id"]
        assert ok.json()["is_bundle"] is True
        assert {i["name"] for i in ok.json()["bundle_items"]} == {"A", "B"}
        # Itself, through PUT.
        detail = reverse("product-detail", kwargs={"pk": bundle_id})
        response = client.patch(detail, {"bundle_items": [{"product": bundle_id}]}, format="json")
        assert response.status_code == 400 and "bundle_items" in response.json()
        # A component cannot become a bundle itself.
        response = client.patch(
            reverse("product-detail", kwargs={"pk": a.pk}), {"bundle_items": items(b)}, format="json"
        )
        assert response.status_code == 400
        with tenant_a.scope():
            assert sorted(BundleItem.objects.filter(bundle_id=bundle_id).values_list("component__name", flat=True)) == [
                "A",
                "B",
            ]
            assert not BundleItem.objects.filter(bundle=a).exists()

    def test_a_failed_write_leaves_no_half_written_product(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        # Prices are valid; the component is unknown, which the service finds after saving the product.
        response = client.post(
            "/api/v1/billing/products",
            {
                "name": "Half",
                "type": "addon",
                "prices": [{"currency": "EUR", "cycle": "monthly", "amount": "1.00"}],
                "bundle_items": [{"product": "11111111-1111-1111-1111-111111111111"}],
            },
            format="json",
        )
        assert response.status_code == 400
        with tenant_a.scope():
            assert not Product.objects.exists() and not Price.objects.exists()
        product = product_in(tenant_a, prices=[("EUR", "monthly", "9.99", "0")])
        response = client.put(
            reverse("product-detail", kwargs={"pk": product.pk}),
            {
                "name": "Renamed",
                "type": "addon",
                "prices": [{"currency": "USD", "cycle": "monthly", "amount": "1.00"}],
                "bundle_items": [{"product": str(product.pk)}],
            },
            format="json",
        )
        assert response.status_code == 400
        with tenant_a.scope():
            product.refresh_from_db()
            assert product.name == "Plan"
            assert list(Price.objects.filter(product=product).values_list("currency", flat=True)) == ["EUR"]

    def test_retire_roles_and_rules(self, tenant_a, tenant_b):
        for role in ORDERED:
            product = product_in(tenant_a)
            url = reverse("product-retire", kwargs={"pk": product.pk})
            response = client_for(tenant_a.users[role], tenant_a.tenant).post(url)
            expected = 200 if role.includes(Role.ADMIN) else 403
            assert response.status_code == expected, (role, response.content)
            if expected == 200:
                assert response.json()["visibility"] == "retired"
            other = client_for(tenant_b.users[role], tenant_b.tenant).post(url)
            assert other.status_code == 404
        assert AuditEvent.objects.filter(action="product.retire").count() == 2

        component = product_in(tenant_a, "Part")
        bundle_of(tenant_a, "Pack", [(component, 1)])
        client = client_for(tenant_a.owner, tenant_a.tenant)
        assert client.post(reverse("product-retire", kwargs={"pk": component.pk})).status_code == 409
        patch = client.patch(
            reverse("product-detail", kwargs={"pk": component.pk}), {"visibility": "retired"}, format="json"
        )
        assert patch.status_code == 409
        with tenant_a.scope():
            assert Product.objects.get(pk=component.pk).visibility == "hidden"

    def test_there_is_no_delete(self, tenant_a):
        product = product_in(tenant_a)
        for role in (Role.ADMIN, Role.OWNER):
            response = client_for(tenant_a.users[role], tenant_a.tenant).delete(
                reverse("product-detail", kwargs={"pk": product.pk})
            )
            assert response.status_code in (403, 405)
        with tenant_a.scope():
            assert Product.objects.filter(pk=product.pk).exists()

    def test_filters_search_and_ordering(self, tenant_a):
        product_in(tenant_a, "Alpha", visibility="public", prices=[("USD", "monthly", "1.00", "0")])
        product_in(tenant_a, "Beta domain", type="domain", prices=[("EUR", "annual", "12.00", "0")])
        product_in(tenant_a, "Gamma", visibility="retired", description="legacy", prices=[])
        client = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
        url = "/api/v1/billing/products"
        assert client.get(url, {"type": "domain"}).json()["count"] == 1
        assert client.get(url, {"visibility": "retired"}).json()["count"] == 1
        assert client.get(url, {"currency": "USD"}).json()["count"] == 1
        assert client.get(url, {"search": "legacy"}).json()["count"] == 1
        assert client.get(url, {"is_bundle": "false"}).json()["count"] == 3
        names = [r["name"] for r in client.get(url, {"ordering": "-name"}).json()["results"]]
        assert names == ["Gamma", "Beta domain", "Alpha"]
        assert client.get(url, {"visibility": "bogus"}).status_code == 400
        assert client.get(url, {"currency": "XXX"}).status_code == 400


# --- the price table ---------------------------------------------------------------------------------


@pytest.mark.django_db
class TestPricing:
    def test_roles_and_isolation(self, tenant_a, tenant_b):
        product = product_in(tenant_a)
        for role in ORDERED:
            response = pricing(client_for(tenant_a.users[role], tenant_a.tenant), product)
            assert response.status_code == (200 if role.includes(Role.BILLING) else 403), role
            assert pricing(client_for(tenant_b.users[role], tenant_b.tenant), product).status_code == 404
        assert pricing(client_for(None, tenant_a.tenant), product).status_code == 401

    def test_effective_monthly_in_several_currencies(self, tenant_a):
        product = product_in(
            tenant_a,
            prices=[
                ("EUR", "monthly", "9.99", "5.00"),
                ("EUR", "quarterly", "10.00", "0"),
                ("EUR", "semiannual", "10.01", "0"),
                ("EUR", "annual", "100.00", "0"),
                ("EUR", "triennial", "0.18", "0"),  # 0.005 a month: half-up gives 0.01
                ("EUR", "onetime", "49.00", "0"),
                ("JPY", "quarterly", "2000", "300"),
                ("JPY", "annual", "10000", "0"),
                ("KWD", "annual", "15.005", "1.500"),
                ("KWD", "biennial", "3.000", "0"),
                ("KWD", "triennial", "0.018", "0"),  # 0.0005 a month → 0.001
            ],
        )
        data = pricing(client_for(tenant_a.owner, tenant_a.tenant), product).json()
        assert data["tax"] is None and data["rounding"].startswith("per line, ROUND_HALF_UP")
        rows = rows_by_key(data)
        expected = {
            ("EUR", "monthly"): ("9.99", "5.00", "9.99", 1),
            ("EUR", "quarterly"): ("10.00", "0.00", "3.33", 3),
            ("EUR", "semiannual"): ("10.01", "0.00", "1.67", 6),
            ("EUR", "annual"): ("100.00", "0.00", "8.33", 12),
            ("EUR", "triennial"): ("0.18", "0.00", "0.01", 36),
            ("EUR", "onetime"): ("49.00", "0.00", None, None),
            ("JPY", "quarterly"): ("2000", "300", "667", 3),
            ("JPY", "annual"): ("10000", "0", "833", 12),
            ("KWD", "annual"): ("15.005", "1.500", "1.250", 12),
            ("KWD", "biennial"): ("3.000", "0.000", "0.125", 24),
            ("KWD", "triennial"): ("0.018", "0.000", "0.001", 36),
        }
        assert set(rows) == set(expected)
        for key, (recurring, setup, monthly, months) in expected.items():
            row = rows[key]
            assert (row["recurring"], row["setup_fee"], row["effective_monthly"], row["months"]) == (
                recurring,
                setup,
                monthly,
                months,
            ), key
            assert row["source"] == "explicit" and row["bundle_discount"] is None and row["recurring_tax"] is None
        # Rows come ordered by currency, then cycle length.
        assert [(r["currency"], r["cycle"]) for r in data["rows"]][:3] == [
            ("EUR", "monthly"),
            ("EUR", "quarterly"),
            ("EUR", "semiannual"),
        ]

    def test_tax_per_country_and_class(self, tenant_a, tenant_b):
        tax_rate_in(tenant_a, "DE", "19", name="USt 19%")
        tax_rate_in(tenant_a, "DE", "7", tax_class="reduced", name="USt 7%")
        tax_rate_in(tenant_a, "JP", "10")
        tax_rate_in(tenant_b, "FR", "20")  # another tenant's rate never applies
        standard = product_in(
            tenant_a,
            prices=[
                ("EUR", "monthly", "9.99", "5.00"),
                ("JPY", "monthly", "1005", "0"),
                ("KWD", "monthly", "1.250", "0"),
            ],
        )
        reduced = product_in(tenant_a, "Ebook", tax_class="reduced", prices=[("EUR", "onetime", "10.05", "0")])
        exempt = product_in(tenant_a, "Exempt", tax_class="exempt", prices=[("EUR", "monthly", "9.99", "0")])
        client = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)

        data = pricing(client, standard, country="de").json()
        assert data["tax"] == {"country": "DE", "rate": "19.0000", "name": "USt 19%"}
        eur = rows_by_key(data)[("EUR", "monthly")]
        # 9.99 x 19 % = 1.8981 → 1.90; 5.00 x 19 % = 0.95 (each line rounded half-up on its own)
        assert (eur["recurring_tax"], eur["recurring_total"]) == ("1.90", "11.89")
        assert (eur["setup_fee_tax"], eur["setup_fee_total"]) == ("0.95", "5.95")
        kwd = rows_by_key(data)[("KWD", "monthly")]
        assert (kwd["recurring_tax"], kwd["recurring_total"]) == ("0.238", "1.488")  # 0.2375 → 0.238

        jpy = rows_by_key(pricing(client, standard, country="JP").json())[("JPY", "monthly")]
        assert (jpy["recurring_tax"], jpy["recurring_total"]) == ("101", "1106")  # 100.5 → 101

        ebook = rows_by_key(pricing(client, reduced, country="DE").json())[("EUR", "onetime")]
        assert ebook["recurring_tax"] == "0.70"  # 10.05 x 7 % = 0.7035

        no_rate = pricing(client, standard, country="FR").json()
        assert no_rate["tax"] == {"country": "FR", "rate": "0.0000", "name": None}
        assert rows_by_key(no_rate)[("EUR", "monthly")]["recurring_tax"] == "0.00"
        assert rows_by_key(pricing(client, exempt, country="DE").json())[("EUR", "monthly")]["recurring_tax"] == "0.00"

        assert pricing(client, standard, country="ZZ").status_code == 400
        assert pricing(client, standard, country="Germany").status_code == 400

    def test_bundle_price_discount_and_explicit_price_wins(self, tenant_a):
        a = product_in(
            tenant_a,
            "A",
            prices=[
                ("EUR", "monthly", "10.00", "5.00"),
                ("EUR", "annual", "100.00", "0"),
                ("USD", "monthly", "12.00", "0"),
            ],
        )
        b = product_in(tenant_a, "B", prices=[("EUR", "monthly", "5.00", "1.00"), ("EUR", "annual", "50.00", "0")])
        bundle = bundle_of(tenant_a, "Pack", [(a, 1), (b, 2)], percent="10", prices=[("EUR", "annual", "150.00", "0")])
        client = client_for(tenant_a.owner, tenant_a.tenant)
        rows = rows_by_key(pricing(client, bundle).json())
        # USD: B has no USD price, so the bundle has none either.
        assert set(rows) == {("EUR", "monthly"), ("EUR", "annual")}
        monthly = rows[("EUR", "monthly")]
        assert monthly["source"] == "bundle"
        assert monthly["components_total"] == "20.00"  # 10 + 2 x 5
        assert monthly["bundle_discount"] == "2.00"
        assert monthly["recurring"] == "18.00"
        assert monthly["setup_fee"] == "7.00"  # 5 + 2 x 1, not discounted
        assert monthly["components_setup_total"] == "7.00"
        annual = rows[("EUR", "annual")]
        assert annual["source"] == "explicit"  # the bundle's own price wins
        assert (annual["recurring"], annual["components_total"], annual["bundle_discount"]) == (
            "150.00",
            "200.00",
            "50.00",
        )
        assert annual["effective_monthly"] == "12.50"

        # The discount is rounded half-up: 12.5 % of 9.99 = 1.24875 → 1.25.
        c = product_in(tenant_a, "C", prices=[("EUR", "monthly", "9.99", "0")])
        odd = bundle_of(tenant_a, "Odd", [(c, 1)], percent="12.5")
        row = rows_by_key(pricing(client, odd).json())[("EUR", "monthly")]
        assert (row["bundle_discount"], row["recurring"]) == ("1.25", "8.74")

    def test_quote(self, tenant_a):
        tax_rate_in(tenant_a, "DE", "19")
        product = product_in(tenant_a, prices=[("EUR", "monthly", "9.99", "5.00"), ("JPY", "annual", "12000", "0")])
        with tenant_a.scope():
            q = services.quote(product, "monthly", "EUR", 3, "DE")
            assert q.unit_price == Decimal("9.99") and q.setup_fee == Decimal("5.00")
            assert q.recurring_subtotal == Decimal("29.97") and q.setup_subtotal == Decimal("15.00")
            assert q.subtotal == Decimal("44.97")
            assert q.recurring_tax == Decimal("5.69")  # 5.6943
            assert q.setup_tax == Decimal("2.85")
            assert q.tax == Decimal("8.54") and q.total == Decimal("53.51")
            assert q.tax_rate == Decimal("19") and q.tax_name == "VAT DE"
        # Outside any tenant scope too (a task or the billing run), from a fresh row.
        fresh = Product.all_tenants.get(pk=product.pk)
        assert services.quote(fresh, "monthly", "EUR", 3, "DE").total == Decimal("53.51")
        with tenant_a.scope():
            untaxed = services.quote(product, cycle="annual", currency="jpy")
            assert (untaxed.subtotal, untaxed.tax, untaxed.total) == (Decimal(12000), Decimal(0), Decimal(12000))
            for args in (
                ("monthly", "XXX"),
                ("weekly", "EUR"),
                ("annual", "EUR"),  # no such price
            ):
                with pytest.raises(InvalidInput):
                    services.quote(product, *args)
            with pytest.raises(InvalidInput):
                services.quote(product, "monthly", "EUR", 0)
            with pytest.raises(InvalidInput):
                services.quote(product, "monthly", "EUR", 1, "XX")

    def test_usage_charge_and_stock(self, tenant_a):
        with tenant_a.scope():
            product = services.product_create(
                tenant=tenant_a.tenant,
                data={
                    "name": "Traffic",
                    "type": "addon",
                    "stock": 2,
                    "metering": {"unit": "GB", "unit_prices": {"EUR": "0.0125", "JPY": "2"}},
                },
            )
            assert services.usage_charge(product, currency="EUR", quantity=Decimal("3")) == Decimal("0.04")  # 0.0375
            assert services.usage_charge(product, currency="JPY", quantity=Decimal("10.25")) == Decimal("21")  # 20.5
            with pytest.raises(InvalidInput):
                services.usage_charge(product, currency="USD", quantity=1)
            services.product_stock_take(product=product, quantity=2)
            from apps.common.exceptions import Conflict

            with pytest.raises(Conflict):
                services.product_stock_take(product=product)
            services.product_stock_release(product=product)
            product.refresh_from_db()
            assert product.stock == 1 and product.is_orderable


# --- tax rates ---------------------------------------------------------------------------------------


@pytest.mark.django_db
class TestTaxRates:
    def test_validation(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        url = "/api/v1/billing/tax-rates"
        assert client.post(url, {"country": "DE", "rate": "19", "name": "VAT"}).status_code == 201
        for bad in (
            {"country": "DE", "rate": "16", "name": "Again"},  # (country, class) exists
            {"country": "ZZ", "rate": "19", "name": "X"},
            {"country": "FR", "rate": "-1", "name": "X"},
            {"country": "FR", "rate": "100.5", "name": "X"},
            {"country": "FR", "rate": "20", "name": " "},
            {"country": "FR", "rate": "0", "name": "X", "tax_class": "exempt"},
            {"country": "FR", "rate": "abc", "name": "X"},
        ):
            response = client.post(url, bad, format="json")
            assert response.status_code == 400, (bad, response.content)
        with tenant_a.scope():
            assert TaxRate.objects.count() == 1


# --- the public catalog ------------------------------------------------------------------------------


PUBLIC_URLS = ("/api/v1/products", "/api/v1/products/", "/api/v1/billing/products/catalog/public")


@pytest.mark.django_db
class TestPublicCatalog:
    def test_lists_only_public_products_without_internal_fields(self, tenant_a, tenant_b):
        part = product_in(tenant_a, "Hidden part", visibility="hidden", stock=3, config={"api_key": "s3cret"})
        shown = product_in(
            tenant_a,
            "Shown",
            visibility="public",
            stock=7,
            config={"plan": "small", "password": "s3cret"},
            metering={"unit": "GB", "unit_prices": {"EUR": "0.05"}},
            prices=[("EUR", "monthly", "9.99", "1.00"), ("JPY", "annual", "12000", "0")],
        )
        bundle_of(tenant_a, "Combo", [(shown, 1), (part, 2)], percent="50", visibility="public")
        product_in(tenant_a, "Gone", visibility="retired")
        product_in(tenant_b, "Elsewhere", visibility="public")
        tenant = tenant_a.tenant
        anonymous = client_for()
        answers = [anonymous.get(url, {"tenant": tenant.slug}) for url in PUBLIC_URLS]
        assert all(a.status_code == 200 for a in answers), [a.content for a in answers]
        assert answers[0].json() == answers[1].json() == answers[2].json()
        body = answers[0].json()
        assert body["tenant"] == {"name": tenant.name, "slug": tenant.slug}
        assert body["count"] == 2
        assert [p["name"] for p in body["results"]] == ["Combo", "Shown"]
        for product in body["results"]:
            assert set(product) == {"id", "name", "slug", "description", "type", "includes", "prices"}
            for price in product["prices"]:
                assert set(price) == {"currency", "cycle", "amount", "setup_fee", "effective_monthly"}
        raw = answers[0].content.decode()
        for secret in ("s3cret", "stock", "tax_class", "config", "metering", str(part.pk), "Gone", "Elsewhere"):
            assert secret not in raw, secret
        shown_row = body["results"][1]
        assert shown_row["id"] == str(shown.pk)
        assert shown_row["prices"] == [
            {"currency": "EUR", "cycle": "monthly", "amount": "9.99", "setup_fee": "1.00", "effective_monthly": "9.99"},
            {"currency": "JPY", "cycle": "annual", "amount": "12000", "setup_fee": "0", "effective_monthly": "1000"},
        ]
        combo = body["results"][0]
        assert combo["includes"] == [{"name": "Shown", "quantity": 1}, {"name": "Hidden part", "quantity": 2}]
        # (9.99 + 2 x 9.99) - 50 % = 29.97 - 14.99 (14.985 rounded half-up) = 14.98
        assert combo["prices"] == [
            {
                "currency": "EUR",
                "cycle": "monthly",
                "amount": "14.98",
                "setup_fee": "1.00",
                "effective_monthly": "14.98",
            }
        ]

    def test_missing_unknown_or_suspended_tenant(self, tenant_a):
        anonymous = client_for()
        for url in PUBLIC_URLS:
            assert anonymous.get(url).status_code == 400
            assert anonymous.get(url, {"tenant": ""}).status_code == 400
            assert anonymous.get(url, {"tenant": "no-such-tenant"}).status_code == 404
            assert anonymous.get(url, {"tenant": "x" * 500}).status_code == 404
            assert anonymous.get(url, {"tenant": "acme\u00e9 \x00:*"}).status_code == 404  # not a slug: no cache key
        Tenant.objects.filter(pk=tenant_a.tenant.pk).update(status=Tenant.Status.SUSPENDED)
        assert anonymous.get(PUBLIC_URLS[0], {"tenant": tenant_a.tenant.slug}).status_code == 404

    def test_credentials_are_neither_needed_nor_checked(self, tenant_a):
        client = client_for()
        client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
        assert client.get(PUBLIC_URLS[2], {"tenant": tenant_a.tenant.slug}).status_code == 200
        # A signed-in member gets the same public list, not the detail route.
        member = client_for(tenant_a.users[Role.VIEWER], tenant_a.tenant)
        response = member.get(PUBLIC_URLS[2], {"tenant": tenant_a.tenant.slug})
        assert response.status_code == 200 and "results" in response.json()

    def test_cached_and_invalidated_on_change(self, tenant_a, django_capture_on_commit_callbacks):
        product = product_in(tenant_a, "Cached", visibility="public")
        anonymous = client_for()
        url, params = PUBLIC_URLS[0], {"tenant": tenant_a.tenant.slug}
        assert [p["name"] for p in anonymous.get(url, params).json()["results"]] == ["Cached"]
        # A write that bypasses the models' signals is not seen: the answer comes from the cache.
        with all_tenants():
            Product.all_tenants.filter(pk=product.pk).update(name="Sneaky")
        assert [p["name"] for p in anonymous.get(url, params).json()["results"]] == ["Cached"]
        # A change through the API drops the entry once its transaction commits.
        admin = client_for(tenant_a.owner, tenant_a.tenant)
        with django_capture_on_commit_callbacks(execute=True):
            response = admin.patch(
                reverse("product-detail", kwargs={"pk": product.pk}), {"name": "Renamed"}, format="json"
            )
        assert response.status_code == 200
        assert [p["name"] for p in anonymous.get(url, params).json()["results"]] == ["Renamed"]
        # Retiring hides it; a price change shows at once.
        with django_capture_on_commit_callbacks(execute=True):
            admin.post(reverse("product-retire", kwargs={"pk": product.pk}))
        assert anonymous.get(url, params).json()["count"] == 0
        other = product_in(tenant_a, "Other", visibility="public")
        with django_capture_on_commit_callbacks(execute=True):
            response = admin.patch(
                reverse("product-detail", kwargs={"pk": other.pk}),
                {"prices": [{"currency": "USD", "cycle": "monthly", "amount": "3.00"}]},
                format="json",
            )
        assert response.status_code == 200
        prices = anonymous.get(url, params).json()["results"][0]["prices"]
        assert [(p["currency"], p["amount"]) for p in prices] == [("USD", "3.00")]

    def test_uncommitted_changes_do_not_drop_the_entry_early(self, tenant_a, django_capture_on_commit_callbacks):
        product_in(tenant_a, "Before", visibility="public")
        anonymous = client_for()
        params = {"tenant": tenant_a.tenant.slug}
        anonymous.get(PUBLIC_URLS[0], params)
        with django_capture_on_commit_callbacks(execute=False) as callbacks, tenant_a.scope():
            services.product_create(
                tenant=tenant_a.tenant, data={"name": "After", "type": "addon", "visibility": "public"}
            )
        # Not committed yet: the entry stays (a reader now would refill it from the old rows anyway).
        assert [p["name"] for p in anonymous.get(PUBLIC_URLS[0], params).json()["results"]] == ["Before"]
        assert callbacks, "the entry is dropped on commit"
        for callback in callbacks:
            callback()
        names = [p["name"] for p in anonymous.get(PUBLIC_URLS[0], params).json()["results"]]
        assert names == ["After", "Before"]

    def test_throttled(self, tenant_a, settings):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"public": "3/min"}}
        anonymous = client_for()
        codes = [anonymous.get(PUBLIC_URLS[0], {"tenant": tenant_a.tenant.slug}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]

    def test_queries_do_not_grow_with_products(self, tenant_a, django_assert_max_num_queries):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        for i in range(3):
            bundle_of(tenant_a, f"B{i}", [(product_in(tenant_a, f"P{i}"), 1)], visibility="public")
        with CaptureQueriesContext(connection) as few:
            client_for().get(PUBLIC_URLS[0], {"tenant": tenant_a.tenant.slug})
        cache.clear()
        for i in range(3, 20):
            bundle_of(tenant_a, f"B{i}", [(product_in(tenant_a, f"P{i}"), 1)], visibility="public")
        with django_assert_max_num_queries(len(few)):
            response = client_for().get(PUBLIC_URLS[0], {"tenant": tenant_a.tenant.slug})
        assert response.json()["count"] == 20


@pytest.mark.django_db
def test_browsable_api_renders_products_and_the_price_table(tenant_a):
    product = product_in(tenant_a, "Browsable", metering={"unit": "GB", "unit_prices": {"EUR": "0.05"}})
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    for path in (
        "/api/v1/billing/products/",
        f"/api/v1/billing/products/{product.pk}/",
        f"/api/v1/billing/products/{product.pk}/pricing/?country=DE",
        "/api/v1/billing/tax-rates/",
    ):
        response = client.get(path, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, path
    assert b"Browsable" in client.get("/api/v1/billing/products/", HTTP_ACCEPT="text/html").content
    root = client.get("/api/v1/", HTTP_ACCEPT="application/json").json()
    assert "billing/products" in root and "billing/tax-rates" in root


@pytest.mark.django_db(transaction=True)
def test_concurrent_stock_takes_never_oversell(tenant_a):
    """Eight orders at once for a product with three left: exactly three succeed (row lock)."""
    import threading

    from django.db import connection as main_connection

    from apps.common.exceptions import Conflict

    if main_connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks")
    product = product_in(tenant_a, "Scarce", stock=3)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def take():
        from django.db import connection

        try:
            barrier.wait()
            with tenant_a.scope():
                services.product_stock_take(product=product)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("out")
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] * 3 + ["out"] * 5
    assert Product.all_tenants.get(pk=product.pk).stock == 0
