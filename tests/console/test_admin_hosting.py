"""Operators create and act on hosting objects from the admin, through the same services as the API:
the add and change pages, the buttons on an object's page (each permission-checked), the audit trail
marked via="operator", and the node really doing the work (runc, nginx)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from agent.runtime import NodeRuntime
from apps.audit.models import AuditEvent
from apps.cloudpods.models import CloudPod, PodStatus
from apps.console.groups import INFRASTRUCTURE, SUPPORT, ensure_operator_groups
from apps.databases.models import DatabaseServer, DatabaseUser
from apps.dns.models import Record, Zone
from apps.domains import verification
from apps.domains.models import Domain
from apps.jobs import services as job_services
from apps.jobs.models import Job, JobStatus
from apps.mail.models import Mailbox, MailDomain
from apps.nodes.models import Node
from apps.websites.models import Website, WebsiteStatus
from tests.conftest import PASSWORD, admin_login
from tests.pods_support import freezer_state, node_in, node_root, pod_in  # noqa: F401  (fixtures)
from tests.web_support import nginx_node, web_node_in, web_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, db):
    user = get_user_model().objects.create_superuser("operator@mpanel.test", PASSWORD)
    admin_login(client, user)
    client.user = user
    return client


def url(model, view, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def act_url(obj, name) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_object_action", args=[obj.pk, name])


def audited(action: str, obj) -> AuditEvent:
    event = AuditEvent.objects.filter(action=action, object_id=str(obj.pk)).latest("created_at")
    assert event.via == "operator", (action, event.via)
    return event


def errors(response) -> str:
    if response.context and "adminform" in response.context:
        return str(response.context["adminform"].form.errors)
    return response.content.decode()[-2000:]


def test_operator_creates_a_pod_that_runs_then_suspends_and_resumes_it(
    operator,
    tenant_a,
    node_root,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    node = node_in(tenant_a, "pods-1", memory_mb=4096)
    page = operator.get(url(CloudPod, "add") + f"?tenant={tenant_a.tenant.pk}")
    assert page.status_code == 200
    assert "pods-1" in page.content.decode() and "Automatic placement" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        data = {
            "tenant": tenant_a.tenant.pk,
            "name": "Admin-Pod",
            "plan": "pod-xs",
            "image": "busybox",
            "node": node.pk,
        }
        response = operator.post(url(CloudPod, "add"), data)
    assert response.status_code == 302, errors(response)
    pod = CloudPod.all_tenants.get(name="admin-pod")
    assert pod.node_id == node.pk and pod.status == PodStatus.RUNNING, pod.last_error
    assert audited("cloudpod.create", pod).actor_id == operator.user.pk
    runtime = NodeRuntime(node_root)
    state = runtime.pod_state(pod.container_id)
    assert state["state"] == "running"

    page = operator.get(url(CloudPod, "change", pod.pk)).content.decode()
    assert act_url(pod, "suspend") in page and act_url(pod, "resume") not in page
    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(act_url(pod, "suspend")).status_code == 302
    pod.refresh_from_db()
    assert pod.status == PodStatus.SUSPENDED
    assert runtime.pod_state(pod.container_id)["state"] == "paused"
    assert freezer_state(state["pid"]) == "FROZEN"
    audited("cloudpod.suspend", pod)

    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(act_url(pod, "resume")).status_code == 302
    pod.refresh_from_db()
    assert pod.status == PodStatus.RUNNING and runtime.pod_state(pod.container_id)["state"] == "running"
    audited("cloudpod.resume", pod)

    # Deleting asks first; the answer "yes" calls the service.
    asked = operator.post(act_url(pod, "delete"))
    assert asked.status_code == 200 and "Are you sure?" in asked.content.decode()
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.RUNNING
    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(act_url(pod, "delete"), {"confirmed": "yes"}).status_code == 302
    pod.refresh_from_db()
    assert pod.status == PodStatus.DELETED
    assert runtime.pod_state(pod.container_id)["state"] == "absent"


@pytest.fixture
def no_dispatch(monkeypatch):
    """Jobs are stored, not run: these tests look at what the services wrote from the admin."""
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


def test_operator_creates_a_website_that_nginx_serves(
    operator,
    tenant_a,
    nginx_node,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    node = web_node_in(tenant_a)
    host = f"admin-{tenant_a.tenant.pk.hex[:8]}.example.com"
    data = {
        "tenant": tenant_a.tenant.pk,
        "primary_domain": host.upper(),
        "aliases": f"www.{host}",
        "node": node.pk,
        "document_root": "public",
        "php_version": "",
        "https": "on",
        "www_redirect": "none",
        "redirects": "[]",
        "error_pages": "{}",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(url(Website, "add"), data)
    assert response.status_code == 302, errors(response)
    site = Website.all_tenants.get(primary_domain=host)
    assert site.aliases == [f"www.{host}"] and site.status == WebsiteStatus.ACTIVE, site.last_error
    audited("website.create", site)
    conf = nginx_node.root / "web" / "sites" / f"{site.site_id}.conf"
    assert conf.exists() and host in conf.read_text()
    # nginx loaded the vhost: the site's own first page, not the default server's 404.
    status, text, _ = nginx_node.wait_until(host, 200)
    assert status == 200 and f"<title>{host}</title>" in text
    assert nginx_node.wait_until(f"www.{host}", 200)[0] == 200

    # An edit through the update service: the alias goes, nginx no longer answers for it.
    page = operator.get(url(Website, "change", site.pk))
    assert page.status_code == 200 and act_url(site, "suspend") in page.content.decode()
    data = {
        "primary_domain": host,
        "aliases": "",
        "document_root": "public",
        "php_version": "",
        "https": "on",
        "www_redirect": "none",
        "redirects": "[]",
        "error_pages": "{}",
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(url(Website, "change", site.pk), data).status_code == 302
    site.refresh_from_db()
    assert site.aliases == []
    assert nginx_node.wait_until(f"www.{host}", 404)[0] == 404  # the default server now
    assert audited("website.update", site).changes["aliases"] == [[f"www.{host}"], []]

    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(act_url(site, "suspend")).status_code == 302
    status, text, _ = nginx_node.wait_until(host, 503)
    assert status == 503 and "suspended" in text
    audited("website.suspend", site)
    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(act_url(site, "resume")).status_code == 302
    assert nginx_node.wait_until(host, 200)[0] == 200
    audited("website.resume", site)


def test_a_refused_create_is_a_form_error_and_writes_nothing(operator, tenant_a, no_dispatch):
    node_in(tenant_a, "small", memory_mb=100, roles=["pods"])
    data = {"tenant": tenant_a.tenant.pk, "name": "big", "plan": "pod-l", "image": "busybox"}
    response = operator.post(url(CloudPod, "add"), data)
    assert response.status_code == 200
    assert "No node has room" in errors(response)
    assert not CloudPod.all_tenants.filter(name="big").exists()
    assert not AuditEvent.objects.filter(action="cloudpod.create").exists()


def test_operator_creates_a_dns_zone_and_its_records(operator, tenant_a, no_dispatch):
    node_in(tenant_a, "ns-1", roles=["dns"])
    zone_name = f"zone-{tenant_a.tenant.pk.hex[:8]}.example"
    response = operator.post(
        url(Zone, "add"), {"tenant": tenant_a.tenant.pk, "name": zone_name, "template": "website", "ipv4": "192.0.2.10"}
    )
    assert response.status_code == 302, errors(response)
    zone = Zone.all_tenants.get(name=zone_name)
    audited("dns.zone.create", zone)
    assert Record.all_tenants.filter(zone=zone, type="A", content="192.0.2.10").exists()

    page = operator.get(url(Record, "add") + f"?zone={zone.pk}")
    assert page.status_code == 200
    response = operator.post(
        url(Record, "add"), {"zone": zone.pk, "name": "mail", "type": "A", "ttl": "300", "content": "192.0.2.25"}
    )
    assert response.status_code == 302, errors(response)
    record = Record.all_tenants.get(zone=zone, name="mail")
    audited("dns.record.create", record)
    serial = Zone.all_tenants.get(pk=zone.pk).serial
    assert serial > zone.serial  # the service bumped it and stored the push

    # The node's own rule refuses a bad record: a form error, nothing written.
    response = operator.post(url(Record, "add"), {"zone": zone.pk, "name": "bad", "type": "A", "content": "nope"})
    assert response.status_code == 200 and not Record.all_tenants.filter(zone=zone, name="bad").exists()

    zone_page = operator.get(url(Zone, "change", zone.pk)).content.decode()
    assert "192.0.2.25" in zone_page and act_url(zone, "import") in zone_page
    imported = operator.post(act_url(zone, "import"), {"zone_file": "ftp 600 IN A 192.0.2.99\n", "replace": ""})
    assert imported.status_code == 302
    assert Record.all_tenants.filter(zone=zone, name="ftp", content="192.0.2.99").exists()
    audited("dns.zone.import", zone)

    asked = operator.post(act_url(record, "delete"))
    assert asked.status_code == 200 and Record.all_tenants.filter(pk=record.pk).exists()
    assert operator.post(act_url(record, "delete"), {"confirmed": "yes"}).status_code == 302
    assert not Record.all_tenants.filter(pk=record.pk).exists()
    assert AuditEvent.objects.get(action="dns.record.delete", object_id=str(record.pk)).via == "operator"


def test_operator_creates_a_mailbox_whose_password_is_only_hashed(operator, tenant_a, no_dispatch):
    node_in(tenant_a, "mx-1", roles=["mail"])
    name = f"mail-{tenant_a.tenant.pk.hex[:8]}.example"
    response = operator.post(url(MailDomain, "add"), {"tenant": tenant_a.tenant.pk, "name": name})
    assert response.status_code == 302, errors(response)
    mail_domain = MailDomain.all_tenants.get(name=name)
    audited("mail.domain.create", mail_domain)

    secret = "correct horse battery staple"
    short = operator.post(
        url(Mailbox, "add"), {"mail_domain": mail_domain.pk, "local_part": "info", "password": "short", "quota_mb": 512}
    )
    assert short.status_code == 200 and "at least 10" in errors(short)
    response = operator.post(
        url(Mailbox, "add"),
        {"mail_domain": mail_domain.pk, "local_part": "Info", "password": secret, "quota_mb": 512, "enabled": "on"},
    )
    assert response.status_code == 302, errors(response)
    box = Mailbox.all_tenants.get(mail_domain=mail_domain, local_part="info")
    assert box.password_hash.startswith("{ARGON2ID}") and secret not in box.password_hash
    event = audited("mail.mailbox.create", box)
    assert secret not in str(event.changes) and box.password_hash not in str(event.changes)
    page = operator.get(url(Mailbox, "change", box.pk)).content.decode()
    assert secret not in page and box.password_hash not in page

    # A new password through the update service: recorded as "changed", never the secret.
    response = operator.post(
        url(Mailbox, "change", box.pk), {"password": secret + "!", "quota_mb": 512, "enabled": "on"}
    )
    assert response.status_code == 302, errors(response)
    event = audited("mail.mailbox.update", box)
    assert event.changes["password"][1] == "changed"


def test_a_database_users_password_is_shown_once(operator, tenant_a, no_dispatch):
    node = node_in(tenant_a, "db-1", roles=["db"])
    response = operator.post(
        url(DatabaseServer, "add"),
        {
            "tenant": tenant_a.tenant.pk,
            "node": node.pk,
            "engine": "postgresql",
            "host": "db.example",
            "port": 5432,
            "admin_user": "postgres",
            "admin_password": "pw-admin",
        },
    )
    assert response.status_code == 302, errors(response)
    server = DatabaseServer.all_tenants.get(host="db.example")
    assert "pw-admin" not in server.admin_password_encrypted
    audited("database.server.create", server)

    response = operator.post(
        url(DatabaseUser, "add"), {"tenant": tenant_a.tenant.pk, "server": server.pk, "name": "shop"}
    )
    assert response.status_code == 200, errors(response)
    user = DatabaseUser.all_tenants.get(name="shop")
    password = response.context["values"][1][1]
    assert password in response.content.decode() and len(password) >= 16
    assert password not in user.password_verifier and user.password_verifier.startswith("SCRAM-SHA-256$")
    audited("database.user.create", user)
    assert password not in str(AuditEvent.objects.filter(object_id=str(user.pk)).values_list("changes", flat=True))
    page = operator.get(url(DatabaseUser, "change", user.pk)).content.decode()
    assert password not in page and 'name="_save"' not in page  # shown once; nothing to edit by hand

    asked = operator.post(act_url(user, "rotate_password"))
    assert asked.status_code == 200 and "Are you sure?" in asked.content.decode()
    rotated = operator.post(act_url(user, "rotate_password"), {"confirmed": "yes"})
    assert rotated.status_code == 200
    new_password = rotated.context["values"][1][1]
    assert new_password != password and new_password in rotated.content.decode()
    assert audited("database.user.rotate_password", user).changes["password"][1] == "changed"


def test_a_group_without_the_permission_sees_no_button_and_gets_403(client, tenant_a, no_dispatch):
    ensure_operator_groups()
    pod = pod_in(tenant_a, 1)
    support = get_user_model().objects.create_user("support@mpanel.test", PASSWORD, is_staff=True)
    support.groups.add(Group.objects.get(name=SUPPORT))
    admin_login(client, support)
    page = client.get(url(CloudPod, "change", pod.pk))
    assert page.status_code == 200  # every group may look
    assert act_url(pod, "suspend") not in page.content.decode()
    assert client.post(act_url(pod, "suspend")).status_code == 403
    assert (
        client.post(url(CloudPod, "add"), {"tenant": tenant_a.tenant.pk, "name": "x", "plan": "pod-xs"}).status_code
        == 403
    )
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.RUNNING

    infra = get_user_model().objects.create_user("infra@mpanel.test", PASSWORD, is_staff=True)
    infra.groups.add(Group.objects.get(name=INFRASTRUCTURE))
    client.logout()
    admin_login(client, infra)
    assert act_url(pod, "suspend") in client.get(url(CloudPod, "change", pod.pk)).content.decode()
    assert client.post(act_url(pod, "suspend")).status_code == 302
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.SUSPENDED
    event = audited("cloudpod.suspend", pod)
    assert event.actor_id == infra.pk


def test_operator_adds_verifies_and_renews_a_domain(operator, tenant_a, no_dispatch, monkeypatch):
    name = f"dom-{tenant_a.tenant.pk.hex[:8]}.example"
    response = operator.post(
        url(Domain, "add"),
        {
            "tenant": tenant_a.tenant.pk,
            "name": name.upper(),
            "registrar": "manual",
            "years": 1,
            "auto_renew": "on",
            "expires_at": "2027-06-01",
            "nameservers": "ns1.example.net",
        },
    )
    assert response.status_code == 302, errors(response)
    domain = Domain.all_tenants.get(name=name)
    assert domain.pending_nameservers == ["ns1.example.net"]
    audited("domain.create", domain)

    # Not proven yet: the refusal is a message on the page, audited; then the TXT record answers.
    monkeypatch.setattr(verification, "txt_values", lambda name: [])
    refused = operator.post(act_url(domain, "verify"), follow=True)
    assert "No TXT record" in refused.content.decode()
    audited("domain.verify_failed", domain)
    monkeypatch.setattr(verification, "txt_values", lambda name: [domain.challenge_value])
    assert operator.post(act_url(domain, "verify")).status_code == 302
    domain.refresh_from_db()
    assert domain.verified_at is not None
    audited("domain.verify", domain)

    page = operator.get(act_url(domain, "renew"))
    assert page.status_code == 200 and 'name="years"' in page.content.decode()
    assert operator.post(act_url(domain, "renew"), {"years": 2}).status_code == 302
    job = Job.all_tenants.get(type="domain.renew", object_id=str(domain.pk))
    assert job.payload["years"] == 2 and job.created_by_id == operator.user.pk


def test_operator_adds_an_agent_node_and_sees_its_secret_once(operator, tenant_a):
    data = {
        "tenant": tenant_a.tenant.pk,
        "hostname": "Edge-1.Example.net",
        "address": "https://192.0.2.7:8443",
        "transport": "agent",
        "roles": ["pods", "web"],
        "status": "active",
        "vcpu": "4",
        "memory_mb": 8192,
        "disk_gb": 100,
        "max_pods": 20,
        "tls_fingerprint": "sha256:" + "ab" * 32,
    }
    response = operator.post(url(Node, "add"), data)
    assert response.status_code == 200 and "adminform" not in response.context, errors(response)
    node = Node.all_tenants.get(hostname="edge-1.example.net")
    secret = response.context["values"][1][1]
    assert node.secret_hash == Node.hash_secret(secret) and node.roles == ["pods", "web"]
    audited("node.create", node)
    assert secret not in operator.get(url(Node, "change", node.pk)).content.decode()

    # Capacity below what is allocated is the service's refusal, on the form.
    Node.all_tenants.filter(pk=node.pk).update(allocated_memory_mb=4096)
    data = {**data, "hostname": "edge-1.example.net", "memory_mb": 1024}
    data.pop("tenant")
    refused = operator.post(url(Node, "change", node.pk), data)
    assert refused.status_code == 200 and "below what is allocated" in errors(refused)
    assert Node.all_tenants.get(pk=node.pk).memory_mb == 8192


def test_pod_renamed_resized_and_its_failed_job_retried_from_its_page(operator, tenant_a, no_dispatch):
    pod = pod_in(tenant_a, 7)
    response = operator.post(url(CloudPod, "change", pod.pk), {"name": "renamed", "subscription_link": ""})
    assert response.status_code == 302, errors(response)
    assert CloudPod.all_tenants.get(pk=pod.pk).name == "renamed"
    assert audited("cloudpod.update", pod).changes["name"] == ["pod-7", "renamed"]

    form = operator.get(act_url(pod, "resize"))
    assert form.status_code == 200 and 'name="plan"' in form.content.decode()
    same = operator.post(act_url(pod, "resize"), {"plan": "pod-xs"})
    assert same.status_code == 200 and "on this plan already" in same.content.decode()
    assert operator.post(act_url(pod, "resize"), {"plan": "pod-s"}).status_code == 302
    pod.refresh_from_db()
    assert pod.status == PodStatus.RESIZING and pod.memory_mb == 256
    audited("cloudpod.resize", pod)

    # The resize job failed on the node: the pod is in error, and its page offers the retry.
    job = Job.all_tenants.get(type="cloudpod.resize", object_id=str(pod.pk))
    Job.all_tenants.filter(pk=job.pk).update(status=JobStatus.FAILED)
    CloudPod.all_tenants.filter(pk=pod.pk).update(status=PodStatus.ERROR)
    pod.refresh_from_db()
    assert act_url(pod, "retry") in operator.get(url(CloudPod, "change", pod.pk)).content.decode()
    retried = operator.post(act_url(pod, "retry"), follow=True)
    assert Job.all_tenants.get(pk=job.pk).status == JobStatus.PENDING, [str(m) for m in retried.context["messages"]]
    assert AuditEvent.objects.get(action="job.retry", object_id=str(job.pk)).via == "operator"
