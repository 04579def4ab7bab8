"""PHP sites end to end: a real php-fpm master (Debian's php-fpm, started by the node agent with its
own configuration) behind the real nginx of web_support, a pool per site running as the site's
own system user (created on this machine and removed at purge), confined by open_basedir."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from django.urls import reverse

from agent import php as php_pools
from agent.files import as_site_owner
from agent.runtime import AgentError
from agent.web import WebRuntime
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.tenancy.roles import Role
from apps.websites.models import Website, WebsiteStatus
from tests.conftest import client_for
from tests.web_support import nginx_node, web_node_in, web_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db

VERSION = (php_pools.installed_versions() or ["8.2"])[-1]
PROBE = """<?php
echo "user=", posix_getpwuid(posix_geteuid())["name"], "\\n";
echo "passwd=", @file_get_contents("/etc/passwd") === false ? "refused" : "READ", "\\n";
echo "tmp=", sys_get_temp_dir(), "\\n";
"""


@pytest.fixture
def php_env(monkeypatch):
    """Short socket folder (a Unix socket path is at most 107 bytes) and the master stopped afterwards."""
    if not php_pools.installed_versions():
        pytest.fail("php-fpm is needed: run the tests with `make test` (it installs php-fpm)")
    run = Path(tempfile.mkdtemp(prefix="mpphp"))
    os.chmod(run, 0o755)
    monkeypatch.setenv("MPANEL_PHPFPM_RUN_DIR", str(run))
    monkeypatch.delenv("MPANEL_PHPFPM_CONF", raising=False)
    yield run
    for pid_file in Path(os.environ.get("MPANEL_NODE_ROOT", "/nonexistent")).glob("web/php/*/php-fpm.pid"):
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGQUIT)
            for _ in range(100):  # its workers run as the site's user: gone before the user is removed
                os.kill(pid, 0)
                time.sleep(0.05)
        except (OSError, ValueError):
            pass
    shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def system_users(monkeypatch, web_root):  # noqa: F811
    """Sites get real system users here; whatever a test leaves behind is removed."""
    monkeypatch.setenv("MPANEL_WEB_SYSTEM_USERS", "1")
    # pytest's temporary folders are 0700: let other users walk (not list) down to the node root,
    # as they can on a real node's /var/lib.
    for folder in [web_root, *web_root.parents]:
        if folder.exists() and str(folder).startswith(tempfile.gettempdir() + "/"):
            os.chmod(folder, folder.stat().st_mode | 0o001)
    before = {entry.pw_name for entry in pwd.getpwall()}
    yield
    for entry in pwd.getpwall():
        if entry.pw_name not in before and entry.pw_name.startswith("web"):
            subprocess.run(["userdel", entry.pw_name], capture_output=True)


def test_php_site_runs_as_its_own_user_through_nginx(
    tenant_a,
    nginx_node,  # noqa: F811
    system_users,
    php_env,
    django_capture_on_commit_callbacks,
):
    web_node_in(tenant_a)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(reverse("website-list"), {"primary_domain": "php.example", "php_version": VERSION},
                              format="json")  # fmt: skip
    assert response.status_code == 201, response.content
    site = Website.all_tenants.get(pk=response.json()["id"])
    assert site.status == WebsiteStatus.ACTIVE, site.last_error

    home = nginx_node.root / "web" / "www" / site.site_id
    entry = pwd.getpwnam(site.system_user)
    assert Path(entry.pw_dir) == home and entry.pw_shell == "/usr/sbin/nologin"
    assert home.stat().st_uid == entry.pw_uid
    assert home.stat().st_gid == grp.getgrnam("www-data").gr_gid and home.stat().st_mode & 0o777 == 0o750
    pool = nginx_node.root / "web" / "php" / VERSION / "pool.d" / f"{site.site_id}.conf"
    assert f"user = {site.system_user}" in pool.read_text()
    checked = subprocess.run([f"/usr/sbin/php-fpm{VERSION}", "-t", "-y", str(pool.parent.parent / "php-fpm.conf")],
                             capture_output=True, text=True)  # fmt: skip
    assert checked.returncode == 0, checked.stderr

    # A file written through the file manager belongs to the site's user and runs as that user.
    files = reverse("hosting-files-write", kwargs={"pk": site.pk})
    assert admin.post(files, {"path": "public/index.php", "content": PROBE}, format="json").status_code == 200
    assert (home / "public" / "index.php").stat().st_uid == entry.pw_uid
    status, text, _ = nginx_node.wait_until("php.example", 200, "/index.php", contains="user=")
    assert status == 200, text
    assert f"user={site.system_user}" in text
    assert "passwd=refused" in text  # open_basedir keeps the site in its own files
    assert f"tmp={home}/.tmp" in text
    socket = php_env / f"{site.site_id}.sock"
    assert socket.is_socket() and socket.stat().st_mode & 0o777 == 0o660

    # Suspended: 503 and no PHP pool left to run the site's code.
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post(reverse("website-suspend", kwargs={"pk": site.pk})).status_code == 202
    assert nginx_node.wait_until("php.example", 503, "/index.php")[0] == 503
    assert not pool.exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post(reverse("website-resume", kwargs={"pk": site.pk})).status_code == 202
    assert pool.exists()
    assert nginx_node.wait_until("php.example", 200, "/index.php", contains="user=")[0] == 200

    # The system user is fixed once the site exists.
    response = admin.patch(reverse("website-detail", kwargs={"pk": site.pk}), {"system_user": "root"}, format="json")
    assert response.status_code == 400 and "system_user" in response.content.decode()

    # Deleted, then purged: the pool, the files and the user are gone.
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.delete(reverse("website-detail", kwargs={"pk": site.pk})).status_code == 202
    assert not pool.exists()
    purge = Job.all_tenants.get(type="website.purge", object_id=str(site.pk))
    Job.all_tenants.filter(pk=purge.pk).update(run_after=purge.run_after.replace(year=2000))
    assert job_services.run_job(purge.pk) == "succeeded"
    assert not php_pools.user_exists(site.system_user)
    assert Job.all_tenants.get(pk=purge.pk).result["user_removed"] is True


def test_a_site_never_runs_as_a_user_it_does_not_own(web_root, system_users, php_env):  # noqa: F811
    web = WebRuntime(web_root / "web")
    # Another site's user (its home is that site's folder, not this one's); removed by system_users.
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent/other-site",
                    "--shell", "/usr/sbin/nologin", "webother"], check=True, capture_output=True)  # fmt: skip
    # The system's own accounts are refused by name (agent/validate/web.py), existing or not.
    for name, why in (("root", "system account"), ("www-data", "system account"), ("webother", "is not this site's")):
        with pytest.raises(AgentError) as refused:
            web.site_ensure({"id": "wevil", "domains": ["evil.example"], "php_version": VERSION,
                             "system_user": name})  # fmt: skip
        assert refused.value.permanent and why in refused.value.message
    assert not list((web_root / "web" / "php").glob("*/pool.d/*.conf"))
    assert (web_root / "web" / "www" / "wevil").stat().st_uid == os.geteuid()  # nothing was given away


def test_system_user_is_unique_per_node_and_php_must_be_on_the_node(tenant_a, django_capture_on_commit_callbacks):
    node = web_node_in(tenant_a)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    url = reverse("website-list")
    assert admin.post(url, {"primary_domain": "one.example", "system_user": "shop"}, format="json").status_code == 201
    again = admin.post(url, {"primary_domain": "two.example", "system_user": "shop"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "system_user_taken"

    with tenant_a.scope():
        node.reported = {"php_versions": ["8.2"]}
        node.save(update_fields=["reported"])
    missing = admin.post(url, {"primary_domain": "three.example", "php_version": "7.4"}, format="json")
    assert missing.status_code == 400 and "not installed" in missing.content.decode()
    assert not Website.all_tenants.filter(primary_domain="three.example").exists()
    ok = admin.post(url, {"primary_domain": "three.example", "php_version": "8.2"}, format="json")
    assert ok.status_code == 201, ok.content


def test_a_pool_php_fpm_refuses_is_never_swapped_in(web_root, php_env, monkeypatch):  # noqa: F811
    web = WebRuntime(web_root / "web")
    monkeypatch.setattr(php_pools.PhpRuntime, "render", lambda self, **kw: "[broken]\nno_such_option = 1\n")
    with pytest.raises(AgentError) as refused:
        web.site_ensure({"id": "wbad", "domains": ["bad.example"], "php_version": VERSION})
    assert refused.value.permanent and "-t refused" in refused.value.message
    assert not list((web_root / "web" / "php").glob("*/pool.d/*.conf"))
    assert not (web_root / "web" / "sites" / "wbad.conf").exists()  # nginx was never pointed at it


def test_file_operations_run_as_the_sites_user(web_root, system_users):  # noqa: F811
    """What a symlink race could reach is what the site's own user may touch: not /etc/shadow."""
    home = web_root / "web" / "www" / "wowner"
    home.mkdir(parents=True)
    user = php_pools.site_user("webowner1", home)
    entry = pwd.getpwnam(user)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    assert as_site_owner(home, os.geteuid) == entry.pw_uid
    with pytest.raises(AgentError) as refused:
        as_site_owner(home, lambda: Path("/etc/shadow").read_text())
    assert "Permission denied" in refused.value.message
    with pytest.raises(AgentError) as failed:
        as_site_owner(home, lambda: 1 / 0)  # any error in the child comes back, none is lost
    assert "ZeroDivisionError" in failed.value.message and not failed.value.permanent
    assert as_site_owner(home, lambda: (home / "new.txt").write_text("x")) == 1
    assert (home / "new.txt").stat().st_uid == entry.pw_uid
    root_site = web_root / "web" / "www" / "wroot"
    root_site.mkdir()
    assert as_site_owner(root_site, os.geteuid) == 0  # the agent's own sites stay in-process
