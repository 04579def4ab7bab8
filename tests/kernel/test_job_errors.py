"""What tenants read of a failure (apps/jobs/errors.py): never a traceback, a server path or an
address; the operators' admin keeps the whole story.

Generated across every error kind and every module whose jobs write a tenant-visible error (the
job's ``last_error`` and attempts, and the resource's own ``last_error``), through the real job
runner and the real handlers; only the node's answer is replaced by the failure under test.
"""

from __future__ import annotations

import ipaddress
import re
from itertools import product

import pytest
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.common.exceptions import Conflict
from apps.jobs import services as job_services
from apps.jobs.errors import (
    SAFE_ERRORS,
    TenantErrorField,
    is_safe_error,
    redact,
    register_safe_error,
    tenant_message,
)
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.jobs.registry import PermanentError
from apps.nodes import services as node_services
from apps.nodes.drivers import NodeDriver, NodeError
from apps.nodes.models import Node
from apps.tenancy.roles import Role
from tests.conftest import admin_login, client_for
from tests.hosting.test_databases import server_in
from tests.hosting.test_dns import zone_in
from tests.pods_support import node_in, pod_in
from tests.web_support import website_in

SECRET_IP4 = "203.0.113.7"
SECRET_IP6 = "2001:db8::7"
SECRET_PATH = "/srv/mpanel/tenants/other-tenant/secret.key"


def _deep_keyerror():
    def inner(mapping):
        return mapping["other-tenant-at-" + SECRET_IP4]

    return inner({})


def _raise(kind: str):
    if kind == "traceback":
        _deep_keyerror()
    if kind == "path":
        open(SECRET_PATH)  # noqa: SIM115 -- FileNotFoundError naming the path is the point
    if kind == "ipv4":
        raise RuntimeError(f"could not reach {SECRET_IP4}:5432 for tenant other-tenant")
    if kind == "node-url":
        raise NodeError(f"agent unreachable at http://[{SECRET_IP6}]:8700: Connection refused")
    if kind == "node-traceback":
        raise NodeError(
            f'Traceback (most recent call last):\n  File "{SECRET_PATH}", line 9, in call\n'
            f"OSError: [Errno 13] Permission denied: '{SECRET_PATH}'",
            permanent=True,
        )
    if kind == "permanent-path":
        raise PermanentError(f"cannot read {SECRET_PATH} on {SECRET_IP4}")
    if kind == "domain-error":
        raise Conflict(f"refused by {SECRET_IP6} ({SECRET_PATH})")
    raise AssertionError(kind)


KINDS = ["traceback", "path", "ipv4", "node-url", "node-traceback", "permanent-path", "domain-error"]


# --- the detector: written apart from the redaction it checks --------------------------------------

_ABSOLUTE = re.compile(r"(?:^|[\s'\"(=:\[,<])/[A-Za-z0-9_.-]")


def leaks(text: str) -> list[str]:
    found = []
    if "Traceback" in text or re.search(r"line \d+, in ", text):
        found.append("traceback")
    if _ABSOLUTE.search(text):
        found.append("absolute path")
    for token in re.split(r"[\s,;()<>'\"]+", text):
        for candidate in {token, token.strip("[]."), token.rsplit(":", 1)[0].strip("[]."), token.split("]")[0][1:]}:
            try:
                ipaddress.ip_address(candidate)
            except ValueError:
                continue
            found.append(f"address {candidate}")
    return found


# --- the modules: how each stores a failing job, the node call that fails, where the tenant reads --


def _website(fx):
    site = website_in(fx, 1)
    return Job.all_tenants.get(object_id=str(site.pk), type="website.provision"), reverse(
        "website-detail", args=[site.pk]
    )


def _cloudpod(fx):
    pod = pod_in(fx, 1, status="pending")
    with fx.scope():
        job = job_services.job_enqueue(tenant=fx.tenant, type="cloudpod.provision", payload={"pod": str(pod.pk)})
    return job, reverse("cloudpod-detail", args=[pod.pk])


def _zone(fx):
    zone = zone_in(fx, "leaks.example")
    return Job.all_tenants.get(type="dns.zone.sync", payload__zone=str(zone.pk)), reverse(
        "dns-zone-detail", args=[zone.pk]
    )


def _database_server(fx):
    server = server_in(fx)
    return Job.all_tenants.get(type="database.server.check"), reverse("database-server-detail", args=[server.pk])


MODULES = {
    "website": (_website, "site_ensure"),
    "cloudpod": (_cloudpod, "pod_state"),
    "zone": (_zone, "dns_zone_ensure"),
    "database-server": (_database_server, "db_check"),
}


@pytest.fixture
def no_dispatch(monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


@pytest.mark.usefixtures("no_dispatch")
@pytest.mark.parametrize(("module", "kind"), list(product(MODULES, KINDS)))
def test_no_tenant_visible_error_leaks(module, kind, tenant_a, monkeypatch, client):
    make, method = MODULES[module]
    job, resource_url = make(tenant_a)
    Job.all_tenants.filter(pk=job.pk).update(max_attempts=1)  # the last attempt: every failure path runs
    monkeypatch.setattr(NodeDriver, method, lambda self, *args, **kwargs: _raise(kind))
    assert job_services.run_job(job.pk) == "failed"

    owner = client_for(tenant_a.owner, tenant_a.tenant)
    listed = owner.get(reverse("job-list"), {"type": job.type}).json()["results"]
    detail = owner.get(reverse("job-detail", args=[job.pk])).json()
    resource = owner.get(resource_url).json()
    texts = {
        "job list last_error": next(j["last_error"] for j in listed if j["id"] == str(job.pk)),
        "job last_error": detail["last_error"],
        **{f"attempt {a['number']} error": a["error"] for a in detail["attempt_log"]},
        "resource last_error": resource.get("last_error", ""),
    }
    assert detail["last_error"], "the failure must say something"
    for where, text in texts.items():
        assert leaks(text) == [], (where, text)
        assert SECRET_IP4 not in text and SECRET_IP6 not in text and "/srv/mpanel" not in text, (where, text)
    if kind in ("traceback", "path", "ipv4", "node-traceback"):
        # Internal errors name a reference the operator can look up: the job and the attempt.
        assert f"reference {job.pk}#1" in detail["last_error"], detail["last_error"]

    # The operator's view keeps everything: the job's detail in the admin, with the traceback.
    stored = Job.all_tenants.get(pk=job.pk)
    assert stored.status == JobStatus.FAILED
    assert "Traceback" in stored.error_detail and stored.error_detail == JobAttempt.objects.get(job=job).detail
    secret = {"traceback": SECRET_IP4, "ipv4": SECRET_IP4, "node-url": SECRET_IP6}.get(kind, SECRET_PATH)
    assert secret in stored.error_detail
    from django.contrib.auth import get_user_model

    operator = get_user_model().objects.create_superuser("ops@mpanel.test", "pw-for-the-operator-1")
    page = admin_login(client, operator).get(reverse("admin:jobs_job_change", args=[job.pk]))
    assert page.status_code == 200 and secret in page.content.decode()


@pytest.mark.parametrize("kind", ["node-url", "node-traceback"])
def test_heartbeat_errors_shown_on_the_node_are_redacted(kind, tenant_a, monkeypatch):
    node = node_in(tenant_a)
    Node.all_tenants.filter(pk=node.pk).update(address=f"http://{SECRET_IP4}:8700")
    monkeypatch.setattr(NodeDriver, "heartbeat", lambda self: _raise(kind))
    assert node_services.node_heartbeat(node=node) is False
    body = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant).get(reverse("node-detail", args=[node.pk])).json()
    assert body["last_error"] and leaks(body["last_error"]) == [], body["last_error"]


def test_the_convention():
    """Safe classes keep their (redacted) message; anything else becomes the generic one."""
    assert tenant_message(PermanentError("The zone is not being deleted.")) == "The zone is not being deleted."
    assert tenant_message(NodeError("nginx -t refused it: in /etc/nginx/x.conf:3")) == (
        "nginx -t refused it: in [path]:3"
    )
    message = tenant_message(KeyError("x"))
    assert message.startswith("Internal error (reference ") and "KeyError" not in message
    # Fractions, versions, "and/or", relative paths and times are not addresses or paths.
    kept = "PHP 8.3 (1.2.3) at 12:30:45, 2/3 done and/or public/index.php, mode 0644"
    assert redact(kept) == kept


def test_a_class_is_made_tenant_safe_by_its_decorator():
    class Explained(Exception):
        pass

    assert not is_safe_error(Explained("for you"))
    try:
        assert register_safe_error(Explained) is Explained
        assert is_safe_error(Explained("for you")) and tenant_message(Explained("for you")) == "for you"
        assert is_safe_error(NodeError("x")) and is_safe_error(Conflict("x"))  # nodes' class; a DomainError
    finally:
        SAFE_ERRORS.unregister(f"{Explained.__module__}.{Explained.__qualname__}")
    assert not is_safe_error(Explained("for you"))


@pytest.mark.django_db
def test_update_and_old_rows_are_redacted_too(tenant_a):
    """The column rule holds for QuerySet.update() and for rows written before it (raw SQL here)."""
    node = node_in(tenant_a)
    Node.all_tenants.filter(pk=node.pk).update(last_error=f"down at {SECRET_IP4}")
    assert Node.all_tenants.get(pk=node.pk).last_error == "down at [address]"
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Node._meta.db_table} SET last_error = %s WHERE id = %s", [SECRET_PATH, node.pk])
    assert Node.all_tenants.get(pk=node.pk).last_error == "[path]"
    assert isinstance(Node._meta.get_field("last_error"), TenantErrorField)


# --- generated: any text with addresses, paths or a traceback in it comes out clean ------------------

words = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), max_codepoint=0x24F), max_size=12)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
pieces = st.one_of(
    words,
    ipv4,
    ipv4.map(lambda a: f"{a}:5432"),
    ipv6,
    ipv6.map(lambda a: f"[{a}]:8700"),
    st.lists(st.from_regex(r"[a-z0-9_.-]{1,10}", fullmatch=True), min_size=1, max_size=4).map(
        lambda parts: "/" + "/".join(parts)
    ),
    ipv4.map(lambda a: f"http://{a}:8700/v1/call"),
    st.sampled_from(["Traceback (most recent call last):\n", '  File "/x/y.py", line 3, in f\n', ": ", "'", "(", ")"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=12))
def test_redact_leaves_nothing(parts):
    text = " ".join(parts)
    assert leaks(redact(text)) == [], (text, redact(text))
