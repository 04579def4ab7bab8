"""Guardian's hosting checks against real conditions: a site's real files on the node, real
PostgreSQL and MariaDB servers, a real PowerDNS answering the DNS lookups, node heartbeats."""

from __future__ import annotations

import subprocess
from datetime import date, timedelta

import pytest
from django.utils import timezone

from agent import files as agent_files
from apps.databases import services as database_services
from apps.databases.models import DatabaseServer, ServerStatus
from apps.dns import services as dns_services
from apps.jobs import services as job_services
from apps.mail.models import MailDomain
from apps.nodes.drivers import LocalDriver, NodeDriver, NodeError
from apps.nodes.models import Node, NodeStatus
from apps.security import guardian
from apps.security.models import GuardianCheckRun, GuardianFinding
from apps.tenancy.roles import Role
from apps.websites.models import Website, WebsiteStatus
from apps.websites.php_support import PHP_SUPPORT, support_status
from tests.conftest import client_for
from tests.databases_support import mariadb_server, postgres_cluster, postgres_server  # noqa: F401
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401
from tests.hosting.test_databases import db_node
from tests.hosting.test_dns import dns_node, zone_in
from tests.pods_support import node_in
from tests.web_support import web_root, website_in  # noqa: F401

URL = "/api/v1/guardian/"


@pytest.fixture
def no_dispatch(monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


def scan(fx, *checks):
    with fx.scope():
        return guardian.scan(tenant=fx.tenant, checks=list(checks) or None)


def open_findings(fx, check):
    with fx.scope():
        return list(GuardianFinding.objects.filter(check_name=check).exclude(status="resolved"))


# --- world-writable files --------------------------------------------------------------------------


@pytest.fixture
def site_files(tenant_a, web_root, no_dispatch):  # noqa: F811
    """An active site whose files really exist under the local node's root."""
    site = website_in(tenant_a, 1)
    Website.all_tenants.filter(pk=site.pk).update(status=WebsiteStatus.ACTIVE)
    root = LocalDriver().runtime.web.site_dir(site.site_id)
    (root / "public" / "uploads").mkdir(parents=True)
    (root / "public" / "index.php").write_text("<?php echo 1;")
    (root / "public" / "index.php").chmod(0o644)
    (root / "public" / "uploads").chmod(0o755)
    root.chmod(0o750)
    (root / "public").chmod(0o755)
    # A link to a world-writable folder outside the site is neither followed nor reported.
    (root / "public" / "tmp-link").symlink_to("/tmp")
    return site, root


def test_a_world_writable_file_is_found_and_not_after_fixing(tenant_a, site_files):
    site, root = site_files
    scan(tenant_a, "world_writable_files")
    assert open_findings(tenant_a, "world_writable_files") == []

    (root / "public" / "index.php").chmod(0o777)
    (root / "public" / "uploads").chmod(0o777)
    scan(tenant_a, "world_writable_files")
    [finding] = open_findings(tenant_a, "world_writable_files")
    assert finding.resource_id == str(site.pk) and finding.severity == "high"
    assert {(p["path"], p["mode"]) for p in finding.evidence["paths"]} == {
        ("public/index.php", "0777"),
        ("public/uploads", "0777"),
    }
    assert finding.evidence["complete"] is True
    assert "public/index.php" in finding.remediation and "0644" in finding.remediation

    (root / "public" / "index.php").chmod(0o644)
    (root / "public" / "uploads").chmod(0o755)
    assert scan(tenant_a, "world_writable_files")["resolved"] == 1
    assert open_findings(tenant_a, "world_writable_files") == []


def test_a_node_that_does_not_answer_resolves_nothing(tenant_a, site_files, monkeypatch):
    _site, root = site_files
    (root / "public" / "index.php").chmod(0o666)
    scan(tenant_a, "world_writable_files")
    assert len(open_findings(tenant_a, "world_writable_files")) == 1

    def down(self, *args, **kwargs):
        raise NodeError("agent unreachable at http://192.0.2.1:8700")

    monkeypatch.setattr(NodeDriver, "site_world_writable", down)
    assert scan(tenant_a, "world_writable_files")["resolved"] == 0
    assert len(open_findings(tenant_a, "world_writable_files")) == 1
    with tenant_a.scope():
        run = GuardianCheckRun.objects.get(check_name="world_writable_files")
    assert run.ok is False and run.unknown == 1


def test_the_walk_is_bounded(tmp_path):
    for i in range(20):
        (tmp_path / f"f{i}").write_text("x")
        (tmp_path / f"f{i}").chmod(0o666)
    whole = agent_files.world_writable(tmp_path)
    assert (whole["count"], whole["complete"]) == (20, True)
    bounded = agent_files.world_writable(tmp_path, max_entries=5, max_report=3)
    assert bounded["complete"] is False and bounded["scanned"] == 5 and len(bounded["paths"]) == 3


# --- PHP versions ---------------------------------------------------------------------------------


def test_the_php_table_edges():
    row = PHP_SUPPORT["7.4"]
    assert support_status("7.4", row.until)[0] == "supported"  # the last day still has support
    assert support_status("7.4", row.until + timedelta(days=1))[0] == "ended"
    assert support_status("7.4", row.until - timedelta(days=10), warn_days=30)[0] == "ending"
    assert support_status("7.4", row.until - timedelta(days=30), warn_days=30)[0] == "supported"
    assert support_status("5.6", date(2000, 1, 1)) == ("unknown", None)  # nobody vouches for it
    from apps.websites.validators import PHP_VERSIONS

    assert set(PHP_VERSIONS) <= set(PHP_SUPPORT)  # every version a site may ask for has a date


@pytest.mark.usefixtures("no_dispatch")
def test_php_version_past_support_is_flagged(tenant_a, web_root, monkeypatch):  # noqa: F811
    sites = {v: website_in(tenant_a, i, php_version="") for i, v in enumerate(["8.1", "8.2"])}
    for version, site in sites.items():
        Website.all_tenants.filter(pk=site.pk).update(status=WebsiteStatus.ACTIVE, php_version=version)
    monkeypatch.setattr(timezone, "localdate", lambda: PHP_SUPPORT["8.1"].until + timedelta(days=1))
    scan(tenant_a, "php_version_unsupported")
    [finding] = open_findings(tenant_a, "php_version_unsupported")
    assert finding.resource_id == str(sites["8.1"].pk)
    assert finding.evidence["status"] == "ended" and finding.evidence["supported_until"] == "2025-12-31"
    Website.all_tenants.filter(pk=sites["8.1"].pk).update(php_version="8.2")
    scan(tenant_a, "php_version_unsupported")
    assert open_findings(tenant_a, "php_version_unsupported") == []


# --- database servers -----------------------------------------------------------------------------


def _register(fx, server, engine):
    with fx.scope():
        row = database_services.server_create(
            tenant=fx.tenant,
            node=db_node(fx),
            engine=engine,
            host="127.0.0.1",
            port=server.port,
            admin_user=server.admin_user,
            admin_password=server.admin_password,
        )
    DatabaseServer.all_tenants.filter(pk=row.pk).update(status=ServerStatus.ACTIVE)
    return row


@pytest.mark.usefixtures("no_dispatch")
def test_database_servers_on_loopback_without_tls_are_not_flagged(tenant_a, postgres_server, mariadb_server):  # noqa: F811
    _register(tenant_a, postgres_server, "postgresql")
    _register(tenant_a, mariadb_server, "mariadb")
    scan(tenant_a, "database_exposed_without_tls")
    assert open_findings(tenant_a, "database_exposed_without_tls") == []
    with tenant_a.scope():
        assert GuardianCheckRun.objects.get(check_name="database_exposed_without_tls").ok is True


@pytest.mark.usefixtures("no_dispatch")
def test_postgresql_on_every_address_without_ssl_is_flagged_until_tls_is_on(tenant_a):
    with postgres_cluster("0.0.0.0") as server:  # the exposed configuration under test
        row = _register(tenant_a, server, "postgresql")
        scan(tenant_a, "database_exposed_without_tls")
        [finding] = open_findings(tenant_a, "database_exposed_without_tls")
        assert finding.resource_id == str(row.pk)
        assert finding.evidence == {"engine": "postgresql", "listen": ["0.0.0.0"], "ssl": False}
        # Fix it the way the remediation says: a certificate, ssl = on, reload.
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=db.test",
             "-keyout", str(server.data / "server.key"), "-out", str(server.data / "server.crt")],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        subprocess.run(["chown", "postgres:postgres", str(server.data / "server.key"), str(server.data / "server.crt")],
                       check=True)  # fmt: skip
        (server.data / "server.key").chmod(0o600)
        conn = server.admin()
        conn.execute("ALTER SYSTEM SET ssl = on")
        conn.execute("SELECT pg_reload_conf()")
        conn.close()
        scan(tenant_a, "database_exposed_without_tls")
        assert open_findings(tenant_a, "database_exposed_without_tls") == []


# --- DNS: CAA, SPF, DKIM, DMARC -------------------------------------------------------------------


@pytest.mark.usefixtures("no_dispatch")
def test_zone_without_caa_is_flagged_and_with_caa_not(tenant_a):
    bare = zone_in(tenant_a, "bare.example")
    with_caa = zone_in(tenant_a, "caa.example")
    with tenant_a.scope():
        dns_services.record_create(zone=with_caa, name="@", type="CAA", content='0 issue "letsencrypt.org"')
    scan(tenant_a, "zone_without_caa")
    assert [f.resource_id for f in open_findings(tenant_a, "zone_without_caa")] == [str(bare.pk)]
    with tenant_a.scope():
        dns_services.record_create(zone=bare, name="@", type="CAA", content='0 issue "letsencrypt.org"')
    scan(tenant_a, "zone_without_caa")
    assert open_findings(tenant_a, "zone_without_caa") == []


@pytest.mark.usefixtures("no_dispatch")
def test_mail_domain_in_our_zone_without_dmarc(tenant_a):
    zone = zone_in(tenant_a, "mine.example")
    with tenant_a.scope():
        dns_services.record_create(zone=zone, name="@", type="TXT", content='"v=spf1 mx -all"')
        mail = MailDomain.objects.create(tenant=tenant_a.tenant, name="mine.example", node=dns_node(tenant_a))
    scan(tenant_a, "mail_without_spf", "mail_without_dmarc")
    assert open_findings(tenant_a, "mail_without_spf") == []
    [finding] = open_findings(tenant_a, "mail_without_dmarc")
    assert finding.resource_id == str(mail.pk)
    assert finding.evidence == {"record": "_dmarc.mine.example", "expected": "v=DMARC1", "source": "zone"}
    assert "_dmarc.mine.example" in finding.remediation
    with tenant_a.scope():
        dns_services.record_create(zone=zone, name="_dmarc", type="TXT", content='"v=DMARC1; p=quarantine"')
    scan(tenant_a, "mail_without_dmarc")
    assert open_findings(tenant_a, "mail_without_dmarc") == []


def test_mail_domain_elsewhere_is_looked_up_in_dns(tenant_a, tenant_b, pdns_node_env, settings, django_capture_on_commit_callbacks):  # noqa: E501, F811  # fmt: skip
    """Not our zone: the real PowerDNS answers (here it serves tenant B's zone, which A cannot read)."""
    dns_node(tenant_b)
    with django_capture_on_commit_callbacks(execute=True), tenant_b.scope():
        dns_services.zone_create(
            tenant=tenant_b.tenant, name="elsewhere.example", template="mail",
            template_vars={"mail_host": "mx.elsewhere.example"},
        )  # fmt: skip
    settings.MPANEL_DNS_RESOLVERS = [f"127.0.0.1:{pdns_node_env.dns_port}"]
    with tenant_a.scope():
        mail = MailDomain.objects.create(tenant=tenant_a.tenant, name="elsewhere.example", node=node_in(tenant_a))
    scan(tenant_a, "mail_without_spf", "mail_without_dkim", "mail_without_dmarc")
    assert open_findings(tenant_a, "mail_without_spf") == []  # the template's SPF, answered by PowerDNS
    assert open_findings(tenant_a, "mail_without_dmarc") == []
    [dkim] = open_findings(tenant_a, "mail_without_dkim")  # the template publishes no DKIM key
    assert dkim.resource_id == str(mail.pk) and dkim.evidence["source"] == "dns"
    assert dkim.evidence["record"] == f"{mail.dkim_selector}._domainkey.elsewhere.example"
    assert findings_of_b_untouched(tenant_b)


def findings_of_b_untouched(fx) -> bool:
    with fx.scope():
        return not GuardianFinding.objects.exists()


# --- nodes ----------------------------------------------------------------------------------------


def test_a_node_whose_heartbeats_stopped_is_flagged(tenant_a, settings):
    settings.MPANEL_NODE_OFFLINE_AFTER = 120
    now = timezone.now()
    fresh = node_in(tenant_a, "fresh-1")
    stale = node_in(tenant_a, "stale-1")
    resting = node_in(tenant_a, "resting-1")
    Node.all_tenants.filter(pk=fresh.pk).update(last_heartbeat_at=now)
    Node.all_tenants.filter(pk=stale.pk).update(last_heartbeat_at=now - timedelta(seconds=121))
    Node.all_tenants.filter(pk=resting.pk).update(
        last_heartbeat_at=now - timedelta(days=3), status=NodeStatus.MAINTENANCE
    )
    scan(tenant_a, "node_heartbeat_stale")
    [finding] = open_findings(tenant_a, "node_heartbeat_stale")
    assert finding.resource_id == str(stale.pk) and finding.severity == "high"
    Node.all_tenants.filter(pk=stale.pk).update(last_heartbeat_at=timezone.now())
    scan(tenant_a, "node_heartbeat_stale")
    assert open_findings(tenant_a, "node_heartbeat_stale") == []


# --- the API: per check, latest findings with when; another tenant sees nothing ---------------------


def test_checks_api_and_isolation(tenant_a, tenant_b, settings):
    settings.MPANEL_NODE_OFFLINE_AFTER = 120
    stale = node_in(tenant_a, "stale-1")
    Node.all_tenants.filter(pk=stale.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    scan(tenant_a)
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    rows = {r["name"]: r for r in member.get(f"{URL}checks/").json()}
    expected = {
        "world_writable_files", "php_version_unsupported", "database_exposed_without_tls", "mail_without_spf",
        "mail_without_dkim", "mail_without_dmarc", "zone_without_caa", "node_heartbeat_stale",
    }  # fmt: skip
    assert expected <= set(rows)
    node_row = rows["node_heartbeat_stale"]
    assert node_row["open_findings"] == 1 and node_row["last_run_ok"] is True and node_row["latest_found_at"]
    assert all(r["remediation"] for r in rows.values())
    listed = member.get(URL, {"check": "node_heartbeat_stale"}).json()["results"]
    assert [f["resource_id"] for f in listed] == [str(stale.pk)]
    assert listed[0]["remediation"] and listed[0]["first_seen_at"] and listed[0]["last_seen_at"]

    other = client_for(tenant_b.owner, tenant_b.tenant)
    assert other.get(URL, {"check": "node_heartbeat_stale"}).json()["results"] == []
    assert other.get(f"{URL}{listed[0]['id']}/").status_code == 404
    assert all(r["open_findings"] == 0 and r["last_run_at"] is None for r in other.get(f"{URL}checks/").json())
    assert client_for(tenant_a.users[Role.VIEWER], tenant_a.tenant).get(f"{URL}checks/").status_code == 403
