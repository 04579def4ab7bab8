"""/api/v1/security/shield/*: WAF policies rendered to nginx (checked with a real `nginx -t`), and
blocked-request events ingested, listed and counted per rule."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from apps.security import services, shield
from apps.security.api import ShieldEventViewSet, ShieldPolicyViewSet
from apps.security.models import ShieldEvent, ShieldPolicy
from apps.tenancy.roles import ORDERED, Role
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for

POLICIES = "/api/v1/security/shield/policies/"
EVENTS = "/api/v1/security/shield/events/"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if shutil.os.path.exists("/usr/sbin/nginx") else None)


def needs_nginx():
    if NGINX is None:
        pytest.fail("nginx is not installed: `make test` installs nginx-light (scripts/test.sh)")


class TestShieldPolicyApi(ApiTestCase):
    viewset = ShieldPolicyViewSet
    basename = "shield-policy"
    roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    def make(self, fx, seq):
        return ShieldPolicy.objects.create(tenant=fx.tenant, site=f"m{seq}.example.com")

    def create_payload(self, fx, seq):
        return {"site": f"s{seq}.example.com", "rate_limit_per_second": 10, "block_cidrs": ["203.0.113.0/24"]}

    def update_payload(self, fx, obj, seq):
        return {"site": obj.site, "maintenance_mode": True, "blocked_paths": ["/wp-admin"]}


class TestShieldEventApi(ApiTestCase):
    viewset = ShieldEventViewSet
    basename = "shield-event"
    roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN}

    def make(self, fx, seq):
        return ShieldEvent.objects.create(
            tenant=fx.tenant, occurred_at=timezone.now(), ip="203.0.113.9", rule="ip_block", site="a.example.com"
        )


FULL = {
    "site": "shop.example.com",
    "rate_limit_per_second": 15,
    "rate_limit_burst": 30,
    "allow_cidrs": ["10.0.0.0/8", "2001:db8::/32"],
    "block_cidrs": ["203.0.113.7", "198.51.100.0/24"],
    "blocked_user_agents": ["sqlmap", "Nikto/2.1", "curl (bot)", "evil;bot"],
    "blocked_paths": ["/wp-admin", "/.git", "/.env", "/xmlrpc.php", "/a%20b~c+d"],
    "max_body_size_kb": 2048,
    "maintenance_mode": True,
}


@pytest.mark.django_db
class TestShieldRendering:
    def test_full_policy_renders_and_passes_nginx_t(self, tenant_a):
        needs_nginx()
        client = client_for(tenant_a.owner, tenant_a.tenant)
        created = client.post(POLICIES, FULL, format="json")
        assert created.status_code == 201, created.content
        assert created.json()["block_cidrs"] == ["203.0.113.7/32", "198.51.100.0/24"]
        conf = client.get(f"{POLICIES}{created.json()['id']}/nginx/")
        assert conf.status_code == 200
        http, server = conf.json()["http"], conf.json()["server"]
        # The preview is what a node renders (agent.shield): the address table (1 blocked, 0 allowed,
        # 2 neither while there is an allow list) and the zones at http level.
        for needle in (
            "rate=15r/s",
            "    default 2;",
            "    203.0.113.7/32 1;",
            "    10.0.0.0/8 0;",
            "    2001:db8::/32 0;",
        ):
            assert needle in http, needle
        for needle in (
            "= 1) { set $mpanel_shield_rule ip_block; return 403; }",
            # in maintenance, an address off the allow list gets the 503; an allowed one passes
            "= 2) { set $mpanel_shield_rule maintenance; return 503; }",
            "client_max_body_size 2048k;",
            "burst=30 nodelay;",
            "sqlmap",
            "wp\\-admin",
        ):
            assert needle in server, needle
        shield.nginx_check(http, server)

    @pytest.mark.parametrize(
        "fields",
        [
            {},
            {"enabled": False, "rate_limit_per_second": 5},
            {"rate_limit_per_second": 1, "rate_limit_burst": 0},
            {"allow_cidrs": ["::1"]},
            {"block_cidrs": ["0.0.0.0/0"]},
            {"blocked_user_agents": ["a b", "x/1.0 (y; z)"]},
            {"blocked_paths": ["/"]},
            {"max_body_size_kb": 1},
        ],
    )
    def test_each_rule_alone_passes_nginx_t(self, tenant_a, fields):
        needs_nginx()
        with tenant_a.scope():
            policy = services.shield_policy_create(tenant=tenant_a.tenant, data={"site": "x.example.com", **fields})
        shield.nginx_check(shield.render_http(policy), shield.render_server(policy))

    def test_nginx_check_reports_a_broken_config(self):
        needs_nginx()
        with pytest.raises(shield.NginxCheckFailed):
            shield.nginx_check("", "this is not nginx;")

    def test_injection_attempts_are_400(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        for bad in (
            {"site": "a.example.com; include /etc/passwd"},
            {"site": "-bad-.example.com"},
            {"blocked_user_agents": ['evil") { return 200; } #']},
            {"blocked_user_agents": ["x\ny"]},
            {"blocked_paths": ["wp-admin"]},
            {"blocked_paths": ['/a"b']},
            {"blocked_paths": ["/a b"]},
            {"allow_cidrs": ["10.0.0.0/8; allow all"]},
            {"block_cidrs": ["300.1.1.1"]},
            {"rate_limit_per_second": 0},
            {"max_body_size_kb": -5},
        ):
            response = client.post(POLICIES, {"site": "ok.example.com", **bad}, format="json")
            assert response.status_code == 400, (bad, response.content)
        assert not ShieldPolicy.all_tenants.exists()

    def test_one_policy_per_site(self, tenant_a, tenant_b):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        assert client.post(POLICIES, {"site": "one.example.com"}, format="json").status_code == 201
        assert client.post(POLICIES, {"site": "ONE.example.com."}, format="json").status_code == 409
        assert client.post(POLICIES, {"site": ""}, format="json").status_code == 201  # the tenant-wide one
        assert client.post(POLICIES, {}, format="json").status_code == 409
        other = client_for(tenant_b.owner, tenant_b.tenant)
        assert other.post(POLICIES, {"site": "one.example.com"}, format="json").status_code == 201


@pytest.mark.django_db
class TestShieldEvents:
    def test_ingest_list_and_count_per_rule(self, tenant_a, tenant_b):
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        now = timezone.now()
        events = [
            {
                "occurred_at": (now - timedelta(minutes=i)).isoformat(),
                "ip": "203.0.113.9",
                "rule": rule,
                "site": "a.test",
            }
            for i, rule in enumerate(["ip_block", "ip_block", "rate_limit", "user_agent", "ip_block"])
        ]
        response = client.post(f"{EVENTS}ingest/", {"events": events}, format="json")
        assert response.status_code == 201 and response.json() == {"ingested": 5}
        client_for(tenant_b.owner, tenant_b.tenant).post(f"{EVENTS}ingest/", {"events": events[:1]}, format="json")
        assert client.get(EVENTS).json()["count"] == 5
        assert client.get(EVENTS, {"rule": "ip_block"}).json()["count"] == 3
        counts = client.get(f"{EVENTS}counts/").json()
        assert [(c["rule"], c["count"]) for c in counts] == [("ip_block", 3), ("rate_limit", 1), ("user_agent", 1)]
        since = (now - timedelta(seconds=90)).isoformat()
        assert client.get(f"{EVENTS}counts/", {"occurred_after": since}).json() == [
            {"rule": "ip_block", "count": 2, "last_seen": counts[0]["last_seen"]},
        ]

    def test_ingest_validates_and_needs_admin(self, tenant_a):
        ok = {"occurred_at": timezone.now().isoformat(), "ip": "203.0.113.9", "rule": "ip_block"}
        for role in ORDERED:
            client = client_for(tenant_a.users[role], tenant_a.tenant)
            expected = 201 if role.includes(Role.ADMIN) else 403
            assert client.post(f"{EVENTS}ingest/", {"events": [ok]}, format="json").status_code == expected
            assert client.get(f"{EVENTS}counts/").status_code == (200 if expected == 201 else 403)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        for bad in ({"events": []}, {"events": [{**ok, "ip": "nope"}]}, {"events": [{**ok, "rule": "x"}]}, {}):
            assert client.post(f"{EVENTS}ingest/", bad, format="json").status_code == 400, bad
        assert client_for().post(f"{EVENTS}ingest/", {"events": [ok]}, format="json").status_code == 401


_NASTY = st.text(alphabet=st.sampled_from(list("ab/.-_ ;{}\"'$\\\n()|*~%+#:")), min_size=0, max_size=12)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(agents=st.lists(_NASTY, max_size=3), paths=st.lists(_NASTY.map(lambda s: "/" + s), max_size=3))
def test_any_input_is_refused_or_renders_a_config_nginx_accepts(tenant_a, agents, paths):
    """Property: a user agent or path either fails validation (400) or renders into a configuration
    that the real `nginx -t` accepts — nothing in between (no directive injection)."""
    needs_nginx()
    try:
        data = shield.clean_policy_data(
            {"site": "p.example.com", "blocked_user_agents": agents, "blocked_paths": paths}
        )
    except ValidationError:
        return
    policy = ShieldPolicy(tenant=tenant_a.tenant, **data)
    shield.nginx_check(shield.render_http(policy), shield.render_server(policy))


def test_a_sites_spec_carries_its_shield_rules_through_the_websites_extension_point(tenant_a):
    """Websites names nothing of security: the security center adds "shield" to ``SPEC_PARTS``."""
    from apps.websites import services as website_services
    from tests.web_support import website_in

    assert "shield" in website_services.SPEC_PARTS
    site = website_in(tenant_a, 1)
    assert website_services.site_spec(site, "active")["shield"] is None  # no policy yet
    with tenant_a.scope():
        services.shield_policy_create(tenant=tenant_a.tenant, data={"site": "", "maintenance_mode": True})
    spec = website_services.site_spec(site, "active")
    assert spec["shield"] == shield.effective_rules(site) and spec["shield"]["maintenance_mode"] is True
