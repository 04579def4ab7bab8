"""Shield applied for real: policies made through the API reach the websites' vhosts (by their
website.update jobs), a real nginx answers real requests (from 127.0.0.x source addresses) with
403/429/503/413, each denial is written to the node's Shield log, reported with the node's metrics
batch and becomes a Shield event of the right tenant and website, never another tenant's."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agent import shield as node_shield
from apps.jobs.models import Job, JobStatus
from apps.metrics import services as metrics_services
from apps.security import shield
from apps.security.models import ShieldEvent, ShieldPolicy
from apps.tenancy.roles import Role
from apps.websites.models import Website, WebsiteStatus
from tests.conftest import client_for
from tests.infrastructure.test_metrics import post_batch, secret_node
from tests.web_support import nginx_node, web_node_in, web_root, website_in  # noqa: F401  (fixtures)

POLICIES = "/api/v1/security/shield/policies/"
EVENTS = "/api/v1/security/shield/events/"
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def request(nginx, host: str, path: str = "/", *, source: str = "127.0.0.1", method: str = "GET",
            body: bytes | None = None, agent: str = "test-client") -> int:  # fmt: skip
    """One request to the real nginx from ``source`` (any 127.0.0.x is this machine)."""
    conn = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=10, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers={"Host": host, "User-Agent": agent})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def workers(nginx) -> int:
    """How many processes the nginx master has (old workers stay until they have finished)."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        count += int(fields[1]) == nginx.proc.pid  # the field after the state is the parent's pid
    return count


def until(nginx, host: str, status: int, timeout: float = 10, **kwargs) -> int:
    """A reload hands over to new workers: ask until the answer is the new one, and until the old
    workers are gone (one of them may still take a connection and answer the old way)."""
    deadline = time.monotonic() + timeout
    while True:
        got = request(nginx, host, **kwargs)
        if (got == status and workers(nginx) == 1) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def live_site(fx, seq, capture, **extra) -> Website:
    """A website made by the service and provisioned on the node (its job run)."""
    with capture(execute=True):
        site = website_in(fx, seq, https=False, **extra)
    site = Website.all_tenants.get(pk=site.pk)
    assert site.status == WebsiteStatus.ACTIVE, site.last_error
    index = web_root_of(site) / "index.html"
    index.write_text("hello")
    return site


def web_root_of(site: Website) -> Path:
    return Path(os.environ["MPANEL_NODE_ROOT"]) / "web" / "www" / site.site_id / site.document_root


def events_of(fx, **params) -> list[dict]:
    response = client_for(fx.users[Role.ADMIN], fx.tenant).get(EVENTS, params)
    assert response.status_code == 200, response.content
    return response.json()["results"]


# Every rule: the policy, a request it denies (and the answer), a request it lets through.
CASES = {
    "ip_block": ({"block_cidrs": ["127.0.0.2"]}, {"source": "127.0.0.2"}, 403, {"source": "127.0.0.3"}),
    "ip_allow": ({"allow_cidrs": ["127.0.0.1/32"]}, {"source": "127.0.0.3"}, 403, {"source": "127.0.0.1"}),
    "maintenance": (
        {"maintenance_mode": True, "allow_cidrs": ["127.0.0.1"]},
        {"source": "127.0.0.4"},
        503,
        {"source": "127.0.0.1"},  # an allowed address still reaches a site in maintenance
    ),
    "user_agent": ({"blocked_user_agents": ["sqlmap"]}, {"agent": "sqlmap/1.7 (x)"}, 403, {"agent": "Mozilla/5.0"}),
    "path": ({"blocked_paths": ["/wp-admin"]}, {"path": "/wp-admin/x.php"}, 403, {"path": "/"}),
    "body_size": (
        {"max_body_size_kb": 1},
        {"method": "POST", "body": b"x" * 4096},
        413,
        {"method": "GET"},
    ),
}


@pytest.mark.parametrize("tenant_wide", [True, False], ids=["tenant-wide", "per-site"])
@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_rule_is_enforced_by_nginx_and_becomes_an_event_of_its_tenant(
    rule,
    tenant_wide,
    tenant_a,
    tenant_b,
    nginx_node,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    fields, denied, status, allowed = CASES[rule]
    web_node_in(tenant_a)
    web_node_in(tenant_b, hostname="web-b")
    site = live_site(tenant_a, 1, django_capture_on_commit_callbacks)
    other = live_site(tenant_b, 2, django_capture_on_commit_callbacks)
    host, other_host = site.primary_domain, other.primary_domain
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(POLICIES, {"site": "" if tenant_wide else host, **fields}, format="json")
    assert response.status_code == 201, response.content
    job = Job.all_tenants.filter(type="website.update", object_id=str(site.pk)).get()
    assert job.status == JobStatus.SUCCEEDED, job.last_error
    assert not Job.all_tenants.filter(type="website.update", object_id=str(other.pk)).exists()

    assert until(nginx_node, host, status, **denied) == status
    assert request(nginx_node, host, **allowed) == 200
    # The same request to the other tenant's site on the same nginx is answered as before.
    plain = 405 if denied.get("method") == "POST" else 404 if "path" in denied else 200  # a static site's answer
    assert request(nginx_node, other_host, **denied) == plain

    result = metrics_services.report_local()
    assert result["shield_events"] >= 1
    events = events_of(tenant_a, rule=rule)
    assert events, f"no {rule} event"
    assert {(e["site"], e["website"]) for e in events} == {(host, str(site.pk))}
    assert {e["ip"] for e in events} == {denied.get("source", "127.0.0.1")}
    assert all(e["rule"] == rule for e in events_of(tenant_a))  # the allowed request is no event
    assert events_of(tenant_b) == []
    assert len(events_of(tenant_a, website=str(site.pk))) == len(events_of(tenant_a))
    assert events_of(tenant_a, website=str(other.pk)) == []
    # Reported once: the next report finds nothing new in the log.
    assert metrics_services.report_local()["shield_events"] == 0
    assert len(events_of(tenant_a)) == len(events)


def test_rate_limit_answers_429_past_the_burst_per_site(
    tenant_a,
    tenant_b,
    nginx_node,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    web_node_in(tenant_a)
    web_node_in(tenant_b, hostname="web-b")
    site = live_site(tenant_a, 1, django_capture_on_commit_callbacks)
    other = live_site(tenant_b, 2, django_capture_on_commit_callbacks)
    # Both tenants limit their sites: each site's zone is its own (the names never collide).
    for fx, target, rate in ((tenant_a, site, 1), (tenant_b, other, 50)):
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(fx.owner, fx.tenant).post(
                POLICIES, {"site": target.primary_domain, "rate_limit_per_second": rate, "rate_limit_burst": 2},
                format="json",
            )  # fmt: skip
        assert response.status_code == 201, response.content
    vhost = (nginx_node.root / "web" / "sites" / f"{site.site_id}.conf").read_text()
    assert f"zone=mpanel_shield_{site.site_id}_" in vhost and "limit_req_status 429;" in vhost
    host = site.primary_domain
    assert until(nginx_node, host, 429) == 429  # the new workers have the limit
    time.sleep(3.1)  # the bucket refills (1 r/s)
    answers = [request(nginx_node, host) for _ in range(6)]
    assert answers[:3] == [200, 200, 200] and answers[-1] == 429, answers  # 1 + burst 2, then refused
    assert request(nginx_node, other.primary_domain) == 200  # its own zone, not this one's

    metrics_services.report_local()
    events = events_of(tenant_a, rule="rate_limit")
    assert len(events) >= answers.count(429) and {e["website"] for e in events} == {str(site.pk)}
    assert events_of(tenant_b) == []


def test_maintenance_without_allow_list_is_503_for_everyone(
    tenant_a,
    nginx_node,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    web_node_in(tenant_a)
    site = live_site(tenant_a, 1, django_capture_on_commit_callbacks)
    admin = client_for(tenant_a.owner, tenant_a.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        created = admin.post(POLICIES, {"site": "", "maintenance_mode": True}, format="json")
    assert until(nginx_node, site.primary_domain, 503) == 503
    assert request(nginx_node, site.primary_domain, source="127.0.0.9") == 503
    # Turned off: the next job takes it out again.
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.patch(f"{POLICIES}{created.json()['id']}/", {"maintenance_mode": False}, format="json")
    assert response.status_code == 200
    assert until(nginx_node, site.primary_domain, 200) == 200
    metrics_services.report_local()
    assert {e["rule"] for e in events_of(tenant_a)} == {"maintenance"}


def test_policy_changes_resync_exactly_the_sites_they_name(tenant_a, tenant_b, web_root):  # noqa: F811
    """Jobs are stored, not run: which websites each change reaches."""
    one = website_in(tenant_a, 1)
    two = website_in(tenant_a, 2, aliases=[f"alias2-{tenant_a.tenant.pk.hex[:8]}.example.com"])
    gone = website_in(tenant_a, 3)
    Website.all_tenants.filter(pk=gone.pk).update(status=WebsiteStatus.DELETED)
    theirs = website_in(tenant_b, 4, node=web_node_in(tenant_b, hostname="web-b"))

    def updates() -> dict:
        rows = Job.all_tenants.filter(type="website.update").values_list("object_id", flat=True)
        counts = {}
        for object_id in rows:
            counts[object_id] = counts.get(object_id, 0) + 1
        Job.all_tenants.filter(type="website.update").delete()
        return counts

    admin = client_for(tenant_a.owner, tenant_a.tenant)
    wide = admin.post(POLICIES, {"site": "", "block_cidrs": ["192.0.2.1"]}, format="json").json()
    assert updates() == {str(one.pk): 1, str(two.pk): 1}
    alias = two.aliases[0]
    by_alias = admin.post(POLICIES, {"site": alias, "blocked_paths": ["/x"]}, format="json").json()
    assert updates() == {str(two.pk): 1}
    admin.patch(f"{POLICIES}{by_alias['id']}/", {"site": one.primary_domain}, format="json")
    assert updates() == {str(one.pk): 1, str(two.pk): 1}  # the site it left and the one it names now
    admin.patch(f"{POLICIES}{by_alias['id']}/", {"site": one.primary_domain}, format="json")
    assert updates() == {}  # nothing changed
    admin.post(POLICIES, {"site": two.primary_domain, "enabled": False}, format="json")
    assert updates() == {}  # a disabled policy changes no vhost
    admin.delete(f"{POLICIES}{wide['id']}/")
    assert updates() == {str(one.pk): 1, str(two.pk): 1}
    # Another tenant's policy naming this tenant's host name reaches nothing of it.
    other = client_for(tenant_b.owner, tenant_b.tenant)
    assert (
        other.post(POLICIES, {"site": one.primary_domain, "maintenance_mode": True}, format="json").status_code == 201
    )
    assert updates() == {}
    assert shield.effective_rules(Website.all_tenants.get(pk=one.pk))["maintenance_mode"] is False
    other.post(POLICIES, {"site": ""}, format="json")
    assert updates() == {str(theirs.pk): 1}


def test_one_sites_broken_rules_fail_that_sites_job_only(
    tenant_a,
    nginx_node,  # noqa: F811
    django_capture_on_commit_callbacks,
    monkeypatch,
):
    web_node_in(tenant_a)
    good = live_site(tenant_a, 1, django_capture_on_commit_callbacks)
    bad = live_site(tenant_a, 2, django_capture_on_commit_callbacks)
    real = shield.effective_rules

    def rules(website):
        if website.pk == bad.pk:  # what no policy can hold (the API refuses it): the node refuses it too
            return {"block_cidrs": ["10.0.0.1; allow all"]}
        return real(website)

    monkeypatch.setattr(shield, "effective_rules", rules)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(tenant_a.owner, tenant_a.tenant).post(
            POLICIES, {"site": "", "block_cidrs": ["127.0.0.5"]}, format="json"
        )
    assert response.status_code == 201
    jobs = dict(Job.all_tenants.filter(type="website.update").values_list("object_id", "status"))
    assert jobs == {str(good.pk): JobStatus.SUCCEEDED, str(bad.pk): JobStatus.FAILED}
    assert Website.all_tenants.get(pk=bad.pk).status == WebsiteStatus.ERROR
    assert until(nginx_node, good.primary_domain, 403, source="127.0.0.5") == 403
    assert request(nginx_node, bad.primary_domain, source="127.0.0.5") == 200  # its previous vhost stays


@pytest.mark.parametrize(
    "layers, address, allowed",
    [
        ((["10.0.0.0/8"], ["10.1.0.0/16"]), "10.1.2.3", True),
        ((["10.0.0.0/8"], ["10.1.0.0/16"]), "10.2.0.1", False),
        ((["10.0.0.0/8", "2001:db8::/32"], ["2001:db8:1::/48"]), "2001:db8:1::1", True),
        ((["10.0.0.0/8"], ["192.168.0.0/16"]), "10.0.0.1", False),
        ((["192.0.2.0/24"], None), "192.0.2.9", True),
    ],
)
def test_every_allow_list_must_let_an_address_in(layers, address, allowed):
    import ipaddress

    base = {"rate_limits": [], "block_cidrs": [], "blocked_user_agents": [], "blocked_paths": [],
            "max_body_size_kb": None, "maintenance_mode": False}  # fmt: skip
    merged = shield.merge_rules([{**base, "allow_cidrs": layer} for layer in layers])
    inside = any(ipaddress.ip_address(address) in ipaddress.ip_network(c) for c in merged["allow_cidrs"])
    assert inside is allowed


def test_the_strictest_of_both_layers_applies(tenant_a):
    with tenant_a.scope():
        wide = ShieldPolicy.objects.create(
            tenant=tenant_a.tenant, site="", max_body_size_kb=500, rate_limit_per_second=10, blocked_paths=["/a"]
        )
        mine = ShieldPolicy.objects.create(
            tenant=tenant_a.tenant,
            site="x.example.com",
            max_body_size_kb=100,
            rate_limit_per_second=5,
            blocked_paths=["/b"],
            maintenance_mode=True,
        )
    site = Website(tenant=tenant_a.tenant, primary_domain="x.example.com", aliases=[])
    rules = shield.effective_rules(site)
    assert rules["max_body_size_kb"] == 100 and rules["maintenance_mode"] is True
    assert rules["blocked_paths"] == ["/a", "/b"]
    assert {limit["zone"] for limit in rules["rate_limits"]} == {wide.pk.hex, mine.pk.hex}
    assert node_shield.validate(rules) is not None


# --- the node's report ------------------------------------------------------------------------------


def log_line(site_id: str, rule: str = "ip_block", **extra) -> str:
    entry = {
        "request_id": uuid.uuid4().hex,
        "time": f"{time.time():.3f}",
        "site": site_id,
        "ip": "203.0.113.9",
        "rule": rule,
        "status": "403",
        "method": "GET",
        "path": "/x",
        "user_agent": "ua",
        "host": "h",
        **extra,
    }
    return json.dumps(entry) + "\n"


def test_the_shield_log_is_read_once_and_across_a_rotation(tmp_path):
    log = tmp_path / "logs" / "shield.log"
    log.parent.mkdir()
    reader = node_shield.ShieldLog(log, tmp_path / "state.json", limit=3)
    assert reader.read()[0] == []  # no log yet
    log.write_text(log_line("w1") + "not json\n" + log_line("w1", rule="unknown") + log_line("w1") + '{"partial')
    events, position = reader.read()
    assert [e["site"] for e in events] == ["w1", "w1"]
    assert reader.read()[0] == events  # not committed: read again
    reader.commit(position)
    assert reader.read()[0] == []  # the partial line waits for its end
    with log.open("a") as f:
        f.write('":1}\n' + log_line("w2"))
    events, position = reader.read()
    assert [e["site"] for e in events] == ["w2"]
    reader.commit(position)
    # logrotate: the last lines written before the move are still read, then the new file.
    with log.open("a") as f:
        f.write(log_line("w3"))
    log.rename(log.with_name("shield.log.1"))
    log.write_text(log_line("w4") + log_line("w5") + log_line("w6"))
    events, position = reader.read()
    assert [e["site"] for e in events] == ["w3", "w4", "w5"]  # three per batch
    reader.commit(position)
    assert [e["site"] for e in reader.read()[0]] == ["w6"]


BAD_EVENTS = {
    "id": {"id": "nope"},
    "ts": {"ts": "yesterday"},
    "old": {"ts": 1.0},
    "rule": {"rule": "everything"},
    "ip": {"ip": "300.1.1.1"},
    "path": {"path": "/" * 1001},
    "user_agent": {"user_agent": 5},
    "not an object": None,
}


@pytest.mark.parametrize("problem", sorted(BAD_EVENTS))
def test_a_bad_event_is_400_and_nothing_is_stored(tenant_a, problem):
    node = secret_node(tenant_a)
    site = website_in(tenant_a, 1, node=node)
    good = {"id": uuid.uuid4().hex, "ts": time.time(), "site": site.site_id, "ip": "203.0.113.9", "rule": "path"}
    bad = None if BAD_EVENTS[problem] is None else {**good, "id": uuid.uuid4().hex, **BAD_EVENTS[problem]}
    samples = [["load.1", int(time.time()), 0.5]]
    response, _ = post_batch(node, {"samples": samples, "shield": [good, bad]})
    assert response.status_code == 400, response.content
    assert "shield" in response.json()
    assert not ShieldEvent.all_tenants.exists()


def test_a_node_reports_only_for_its_own_sites(tenant_a, tenant_b):
    node = secret_node(tenant_a)
    mine = website_in(tenant_a, 1, node=node)
    elsewhere = website_in(tenant_a, 2, node=web_node_in(tenant_a, hostname="web-2"))
    theirs = website_in(tenant_b, 3, node=web_node_in(tenant_b, hostname="web-b"))
    events = [
        {
            "id": uuid.uuid4().hex,
            "ts": time.time(),
            "site": s.site_id,
            "ip": "203.0.113.9",
            "rule": "ip_block",
            "user_agent": "a\x00b",
        }
        for s in (mine, elsewhere, theirs)
    ]
    batch = {"samples": [["load.1", int(time.time()), 0.5]], "shield": events}
    response, _ = post_batch(node, batch)
    assert response.status_code == 200, response.content
    assert response.json()["shield"] == {"received": 3, "stored": 1, "unmatched": 2}
    again, _ = post_batch(node, batch)  # sent again: each request is stored once
    assert again.json()["shield"] == {"received": 3, "stored": 0, "unmatched": 2}
    stored = ShieldEvent.all_tenants.get()
    assert (stored.tenant_id, stored.website_id, stored.user_agent) == (tenant_a.tenant.pk, mine.pk, "ab")


@pytest.mark.django_db(transaction=True)
def test_the_agent_process_reports_its_shield_log(tenant_a, tenant_b, live_server, tmp_path):
    """``python -m agent report --once`` sends the log's new lines with its signed batch."""
    node = secret_node(tenant_a, "agent-1", transport="agent", address="http://127.0.0.1:9")
    pk = uuid.uuid4()  # the row alone: a provision job would run now and find no agent at that address
    site = Website.all_tenants.create(id=pk, tenant=tenant_a.tenant, node=node, primary_domain="agent.example.com",
                                      site_id=f"w{pk.hex}", system_user=f"web{pk.hex[:8]}")  # fmt: skip
    secret_file = tmp_path / "secret"
    secret_file.write_text(shield_secret(node))
    root = tmp_path / "node"
    log = node_shield.log_path(root / "web")
    log.parent.mkdir(parents=True)
    log.write_text(log_line(site.site_id, "user_agent") + log_line(site.site_id, "rate_limit"))
    env = {**os.environ, "MPANEL_NODE_ROOT": str(root)}
    command = [sys.executable, "-m", "agent", "report", "--once", "--panel-url", live_server.url,
               "--node-id", str(node.pk), "--secret-file", str(secret_file)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["shield"] == {"received": 2, "stored": 2, "unmatched": 0}
    assert sorted(ShieldEvent.all_tenants.filter(tenant=tenant_a.tenant).values_list("rule", flat=True)) == [
        "rate_limit",
        "user_agent",
    ]
    assert events_of(tenant_b) == []
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(again.stdout.strip().splitlines()[-1])["shield"]["received"] == 0  # committed


def shield_secret(node) -> str:
    from apps.nodes import agent_secret

    return agent_secret.derive(node)
