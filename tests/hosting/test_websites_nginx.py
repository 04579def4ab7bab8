"""Websites end to end on a real nginx (loopback ports, its own config under tmp): the API makes
the site, the file manager puts index.html, nginx serves it with the site's Host header; suspend
→ 503, resume → 200, delete → gone, purge → files gone. Jobs run in-process after commit."""

from __future__ import annotations

import shutil
import tempfile

import pytest
from django.urls import reverse

from agent.runtime import AgentError
from agent.web import WebRuntime
from apps.jobs import services as job_services
from apps.jobs.models import Job, JobStatus
from apps.tenancy.roles import Role
from apps.websites.models import Website, WebsiteStatus
from tests.conftest import client_for
from tests.web_support import nginx_node, web_node_in, web_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def fresh(site_id) -> Website:
    return Website.all_tenants.get(pk=site_id)


def test_site_lifecycle_through_the_api_on_a_real_nginx(
    tenant_a,
    nginx_node,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    web_node_in(tenant_a)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            reverse("website-list"),
            {"primary_domain": "Bücher.Example.", "aliases": ["www.bücher.example"], "https": True},
            format="json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["primary_domain"] == "xn--bcher-kva.example"
    assert body["aliases"] == ["www.xn--bcher-kva.example"]
    site = fresh(body["id"])
    assert site.status == WebsiteStatus.ACTIVE, site.last_error
    assert site.certificate["issuer"] == "self-signed"
    host = "xn--bcher-kva.example"

    # index.html through the file manager, then fetched over HTTP and HTTPS with the Host header.
    files = reverse("hosting-files-write", kwargs={"pk": site.pk})
    response = admin.post(files, {"path": "public/index.html", "content": "<h1>hello from mPanel</h1>"}, format="json")
    assert response.status_code == 200, response.content
    status, text, _ = nginx_node.wait_until(host, 200)
    assert status == 200 and "hello from mPanel" in text
    status, text, _ = nginx_node.wait_until("www.xn--bcher-kva.example", 200, https=True)
    assert status == 200 and "hello from mPanel" in text
    assert nginx_node.get("other.example")[0] == 404  # the default server, not this site

    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(reverse("website-suspend", kwargs={"pk": site.pk}))
    assert response.status_code == 202, response.content
    assert fresh(site.pk).status == WebsiteStatus.SUSPENDED
    status, text, _ = nginx_node.wait_until(host, 503)
    assert status == 503 and "suspended" in text and "hello" not in text

    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post(reverse("website-resume", kwargs={"pk": site.pk})).status_code == 202
    status, text, _ = nginx_node.wait_until(host, 200)
    assert status == 200 and "hello from mPanel" in text

    # Settings change: HTTP → HTTPS redirect, and a custom 404 page.
    admin.post(files, {"path": "public/missing.html", "content": "custom not found"}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.patch(
            reverse("website-detail", kwargs={"pk": site.pk}),
            {
                "error_pages": {"404": "/missing.html"},
                "redirects": [{"source": "/old", "target": "https://example.org/new"}],
            },
            format="json",
        )
    assert response.status_code == 200, response.content
    status, text, _ = nginx_node.wait_until(host, 404, "/nope", contains="custom")
    assert status == 404 and "custom not found" in text
    status, _text, headers = nginx_node.wait_until(host, 301, "/old")  # old workers may still answer
    assert status == 301 and headers["Location"] == "https://example.org/new"
    with django_capture_on_commit_callbacks(execute=True):
        admin.patch(reverse("website-detail", kwargs={"pk": site.pk}), {"redirect_https": True}, format="json")
    status, _text, headers = nginx_node.wait_until(host, 301)
    assert status == 301 and headers["Location"] == f"https://{host}/"

    with django_capture_on_commit_callbacks(execute=True):
        assert admin.delete(reverse("website-detail", kwargs={"pk": site.pk})).status_code == 202
    site = fresh(site.pk)
    assert site.status == WebsiteStatus.DELETED and site.purge_after is not None
    status, text, _ = nginx_node.wait_until(host, 404, contains="nginx")
    assert status == 404 and "hello" not in text and "custom" not in text
    web = nginx_node.root / "web"
    assert not (web / "sites" / f"{site.site_id}.conf").exists()
    assert not (web / "www" / site.site_id).exists() and (web / "trash" / site.site_id).exists()

    # The grace period ends: the purge job removes the files.
    purge = Job.all_tenants.get(type="website.purge", object_id=str(site.pk))
    assert job_services.run_job(purge.pk) == "not_due"
    Job.all_tenants.filter(pk=purge.pk).update(run_after=site.purge_after.replace(year=2000))
    assert job_services.run_job(purge.pk) == "succeeded"
    assert not (web / "trash" / site.site_id).exists()
    # Jobs of the site all succeeded; the hostname is free again.
    assert set(Job.all_tenants.filter(object_id=str(site.pk)).values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    with django_capture_on_commit_callbacks(execute=True):
        again = admin.post(reverse("website-list"), {"primary_domain": "bücher.example"}, format="json")
    assert again.status_code == 201, again.content


def test_a_configuration_nginx_refuses_is_never_swapped_in(nginx_node, monkeypatch):  # noqa: F811
    web = WebRuntime(nginx_node.root / "web")
    spec = {"id": "wgood", "domains": ["good.example"], "status": "active"}
    web.site_ensure(spec)
    (nginx_node.root / "web" / "www" / "wgood" / "public" / "index.html").write_text("good site")
    assert nginx_node.wait_until("good.example", 200, contains="good site")[1] == "good site"
    live = nginx_node.root / "web" / "sites" / "wgood.conf"
    before = live.read_text()

    monkeypatch.setattr(WebRuntime, "render", lambda self, spec: "server { no_such_directive on; }\n")
    with pytest.raises(AgentError) as refused:
        web.site_ensure({**spec, "domains": ["good.example", "alias.example"]})
    assert refused.value.permanent and "nginx -t" in refused.value.message
    assert live.read_text() == before
    assert sorted(p.name for p in live.parent.iterdir()) == ["wgood.conf"]  # no temp or staged file left
    # The first reload's old worker may still take a connection: wait for the site, as elsewhere.
    assert nginx_node.wait_until("good.example", 200, contains="good site")[1] == "good site"


def test_a_failed_reload_puts_the_previous_vhost_back(nginx_node, monkeypatch):  # noqa: F811
    web = WebRuntime(nginx_node.root / "web")
    spec = {"id": "wkeep", "domains": ["keep.example"], "status": "active"}
    web.site_ensure(spec)
    live = nginx_node.root / "web" / "sites" / "wkeep.conf"
    before = live.read_text()

    def broken_reload(self, conf):
        raise AgentError("nginx reload failed: simulated")

    monkeypatch.setattr(WebRuntime, "_reload", broken_reload)
    with pytest.raises(AgentError):
        web.site_ensure({**spec, "status": "suspended"})
    assert live.read_text() == before


def test_a_refused_configuration_fails_the_job_and_marks_the_site(
    tenant_a,
    nginx_node,  # noqa: F811
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    web_node_in(tenant_a)
    monkeypatch.setattr(WebRuntime, "render", lambda self, spec: "server { no_such_directive on; }\n")
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(reverse("website-list"), {"primary_domain": "broken.example"}, format="json")
    assert response.status_code == 201
    site = fresh(response.json()["id"])
    assert site.status == WebsiteStatus.ERROR and "nginx -t" in site.last_error
    job = Job.all_tenants.get(object_id=str(site.pk), type="website.provision")
    assert job.status == JobStatus.FAILED
    assert not (nginx_node.root / "web" / "sites" / f"{site.site_id}.conf").exists()


def test_default_main_configuration_is_written_and_valid(web_root, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.delenv("MPANEL_NGINX_CONF", raising=False)
    monkeypatch.setenv("MPANEL_NGINX_LISTEN", "127.0.0.1:18080")
    monkeypatch.setenv("MPANEL_NGINX_LISTEN_SSL", "127.0.0.1:18443")
    run = tempfile.mkdtemp(prefix="mpphp")  # a socket path must stay under 108 bytes
    monkeypatch.setenv("MPANEL_PHPFPM_RUN_DIR", run)
    web = WebRuntime(web_root / "web")
    spec = {
        "id": "wphp",
        "domains": ["php.example"],
        "status": "active",
        "php_version": "8.2",
        "https": True,
        "redirect_https": True,
        "www_redirect": "www",
    }
    try:
        result = web.site_ensure(spec)
        assert result["changed"] and result["reloaded"] is False  # nothing runs this nginx: checked, not reloaded
        assert result["php"]["socket"] == f"{run}/wphp.sock"
        text = (web_root / "web" / "sites" / "wphp.conf").read_text()
        assert f"fastcgi_pass unix:{run}/wphp.sock;" in text
        assert "server_name php.example;" in text and "return 301 https://www.php.example$request_uri;" in text
        assert web.site_ensure(spec)["changed"] is False
    finally:
        web.site_remove("wphp")  # the last pool gone, the agent stops the php-fpm master it started
        shutil.rmtree(run, ignore_errors=True)
