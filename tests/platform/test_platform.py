import pytest
import yaml
from django.core.management import call_command

from apps.customers.models import Customer
from apps.tenancy.roles import Role
from tests.conftest import client_for

DOCUMENTED_MOUNTS = [
    "products", "orders", "users", "customers", "guardian", "ops/overview", "ops/platform-overview", "ops/servers",
    "ops/provisioning", "hosting/servers", "hosting/server-metrics", "hosting/websites", "hosting/domains",
    "hosting/dns", "hosting/email", "hosting/files", "hosting/databases", "enterprise/ssl", "enterprise/api-keys",
    "enterprise/app-installer", "enterprise/backups", "enterprise/ai", "enterprise/websocket", "enterprise/graphql",
    "enterprise/monitoring", "enterprise/cdn", "enterprise/kubernetes", "enterprise/analytics",
    "enterprise/white-label", "enterprise/api-marketplace", "enterprise/premium-tools", "billing/products",
    "billing/invoices", "billing/subscriptions", "security", "cloudpods",
]  # fmt: skip


@pytest.mark.django_db
class TestPlatform:
    def test_debug_is_public(self):
        for url in ("/api/v1/__debug", "/api/v1/__debug/"):
            response = client_for().get(url)
            assert response.status_code == 200
            body = response.json()
            assert body["status"] == "ok" and body["timestamp"]

    def test_healthz_checks_database_and_redis(self, settings):
        response = client_for().get("/api/v1/healthz")
        assert response.status_code == 200, response.content
        checks = response.json()["checks"]
        assert checks["database"] == "ok"
        assert checks.get("redis") == ("ok" if settings.REDIS_URL else None)

    def test_healthz_reports_a_dead_redis(self, settings):
        settings.REDIS_URL = "redis://127.0.0.1:1/0"
        response = client_for().get("/api/v1/healthz/")
        assert response.status_code == 503
        assert response.json()["checks"]["redis"].startswith("error")

    def test_schema_and_docs(self):
        response = client_for().get("/api/v1/schema/")
        assert response.status_code == 200
        schema = yaml.safe_load(response.content)
        assert schema["openapi"].startswith("3.")
        assert "/api/v1/customers/" in schema["paths"]
        assert "bearerAuth" in schema["components"]["securitySchemes"]
        docs = client_for().get("/api/v1/docs/")
        assert docs.status_code == 200 and b"swagger" in docs.content.lower()

    def test_schema_validates_without_warnings(self, tmp_path):
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
        assert (tmp_path / "schema.yml").stat().st_size > 1000

    def test_modules_not_built_are_absent(self, tenant_a):
        """Every mount the API documents either is a real route or answers 404: never a stub."""
        from django.urls import Resolver404, resolve

        client = client_for(tenant_a.owner, tenant_a.tenant)
        absent = 0
        for mount in DOCUMENTED_MOUNTS:
            url = f"/api/v1/{mount}/"
            try:
                resolve(url)
            except Resolver404:
                absent += 1
                assert client.get(url).status_code == 404, url
                assert client.post(url, {}, format="json").status_code == 404, url
        assert absent, "every mount is built: drop this test's list of absentees"

    def test_trailing_slash_is_optional(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        assert client.get("/api/v1/customers").json() == client.get("/api/v1/customers/").json()
        created = client.post("/api/v1/customers", {"name": "N", "email": "n@example.com"}, format="json")
        assert created.status_code == 201

    def test_browsable_api_renders(self, tenant_a):
        with tenant_a.scope():
            Customer.objects.create(name="Shown", email="s@example.com", currency="USD")
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = client.get("/api/v1/customers/", HTTP_ACCEPT="text/html")
        assert response.status_code == 200
        assert b"Shown" in response.content
        root = client.get("/api/v1/", HTTP_ACCEPT="application/json")
        assert root.status_code == 200 and "customers" in root.json()

    def test_request_id_is_echoed_or_made(self):
        response = client_for().get("/api/v1/__debug", HTTP_X_REQUEST_ID="abcdef123456")
        assert response["X-Request-ID"] == "abcdef123456"
        assert len(client_for().get("/api/v1/__debug")["X-Request-ID"]) == 32

    def test_seed_demo_makes_one_member_per_role(self, capsys):
        from apps.tenancy.models import Membership, Tenant

        call_command("seed_demo", "--password", "Demo-pass-123")
        tenant = Tenant.objects.get(slug="demo")
        assert sorted(Membership.objects.filter(tenant=tenant).values_list("role", flat=True)) == sorted(Role.values)
        out = capsys.readouterr().out
        assert "owner@demo.mpanel.local" in out and "Demo-pass-123" in out
        login = client_for().post(
            "/api/v1/auth/login/", {"email": "viewer@demo.mpanel.local", "password": "Demo-pass-123"}, format="json"
        )
        assert login.status_code == 200
        call_command("seed_demo", "--if-empty")
        assert Tenant.objects.count() == 1
