"""A suspended hosting plan's mail, on the real data plane: the customer's mail domains are
suspended on the mail node, so Postfix's smtpd answers RCPT to them with a 4xx (the sender keeps
the mail and retries) and Dovecot refuses their mailboxes' logins (a ``deny`` passdb; `doveadm auth
test` and an IMAP login fail even with the right password); the resume restores both. Another
customer's domain on the same node is untouched."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from agent import mail as agent_mail
from apps.audit.models import AuditEvent
from apps.billing.services.subscriptions import subscription_resume, subscription_suspend
from apps.hosting import services as hosting_services
from apps.hosting.models import AccountStatus
from apps.mail import services as mail_services
from apps.mail.models import MailDomain
from tests.billing_support import customer_of
from tests.hosting_support import account_of, nodes_in, order_paid, plan_in
from tests.mail_support import dovecot, mail_node_root, mail_tmp  # noqa: F401  (fixtures)
from tests.postfix_support import postfix  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def light_crypto(settings):
    settings.MPANEL_DKIM_KEY_BITS = 1024
    settings.MPANEL_MAIL_ARGON2_MEMORY_KB = 8192


def auth_ok(dovecot, user: str) -> bool:  # noqa: F811
    result = subprocess.run(["doveadm", "-c", str(dovecot.conf), "auth", "test", user, PASSWORD],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    return result.returncode == 0


def mail_for(fx, capture, name: str, customer) -> MailDomain:
    with capture(execute=True), fx.scope():
        domain = mail_services.mail_domain_create(tenant=fx.tenant, name=name, customer=customer)
        mail_services.mailbox_create(mail_domain=domain, local_part="sales", password=PASSWORD)
    return domain


def test_suspended_plan_defers_mail_and_refuses_logins_until_resumed(
    tenant_a,
    dovecot,  # noqa: F811
    postfix,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    capture = django_capture_on_commit_callbacks
    nodes_in(tenant_a)
    buyer = customer_of(tenant_a, email="buyer@example.com")
    other = customer_of(tenant_a, email="other@example.com")
    shop = mail_for(tenant_a, capture, "shop.example", buyer)
    elsewhere = mail_for(tenant_a, capture, "other.example", other)
    sub = order_paid(tenant_a, capture, plan_in(tenant_a), domain=None, email="buyer@example.com")
    account = account_of(sub)
    assert account.status == AccountStatus.ACTIVE
    assert postfix.rcpt("sales@shop.example")[0] == 250
    assert dovecot.settles("sales@shop.example", PASSWORD, ok=True) and auth_ok(dovecot, "sales@shop.example")

    # Non-payment: the plan's mail is deferred (4xx, never a bounce) and its logins refused.
    with capture(execute=True), tenant_a.scope():
        subscription_suspend(sub=sub, reason="nonpayment")
    account.refresh_from_db()
    assert account.status == AccountStatus.SUSPENDED and account.suspended_mail_domains == [str(shop.pk)]
    shop.refresh_from_db()
    assert shop.suspended and shop.status == "active", shop.last_error
    code, text = postfix.rcpt("sales@shop.example")
    assert code == 450 and "suspended" in text, text
    assert postfix.rcpt("nobody@shop.example")[0] == 450  # the whole domain waits, known or not
    assert dovecot.settles("sales@shop.example", PASSWORD, ok=False) and not auth_ok(dovecot, "sales@shop.example")
    assert AuditEvent.objects.filter(action="mail.domain.suspend", object_id=str(shop.pk)).exists()
    # Another customer's domain on the same node is untouched.
    assert postfix.rcpt("sales@other.example")[0] == 250 and auth_ok(dovecot, "sales@other.example")
    assert not MailDomain.all_tenants.get(pk=elsewhere.pk).suspended

    # Suspending the account again (as the reconciliation does) changes nothing for its mail.
    with capture(execute=True), tenant_a.scope():
        hosting_services.account_suspend(sub)
    assert AuditEvent.objects.filter(action="mail.domain.suspend", object_id=str(shop.pk)).count() == 1

    # Paid: the resume restores delivery and logins.
    with capture(execute=True), tenant_a.scope():
        subscription_resume(sub=sub)
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE and account.suspended_mail_domains == []
    assert not MailDomain.all_tenants.get(pk=shop.pk).suspended
    assert postfix.rcpt("sales@shop.example")[0] == 250
    assert dovecot.settles("sales@shop.example", PASSWORD, ok=True) and auth_ok(dovecot, "sales@shop.example")


def test_resume_leaves_a_domain_the_plan_did_not_suspend(tenant_a, mail_node_root, django_capture_on_commit_callbacks):  # noqa: F811
    """A mail domain suspended by staff before the plan's suspension stays suspended after its resume."""
    capture = django_capture_on_commit_callbacks
    nodes_in(tenant_a)
    buyer = customer_of(tenant_a, email="buyer@example.com")
    own = mail_for(tenant_a, capture, "shop.example", buyer)
    held = mail_for(tenant_a, capture, "held.example", buyer)
    with capture(execute=True), tenant_a.scope():
        assert mail_services.mail_domain_suspend(mail_domain=held) is True
        assert mail_services.mail_domain_suspend(mail_domain=held) is False
    sub = order_paid(tenant_a, capture, plan_in(tenant_a), domain=None, email="buyer@example.com")
    with capture(execute=True), tenant_a.scope():
        subscription_suspend(sub=sub, reason="nonpayment")
        subscription_resume(sub=sub)
    assert not MailDomain.all_tenants.get(pk=own.pk).suspended
    assert MailDomain.all_tenants.get(pk=held.pk).suspended
    query = subprocess.run(["postmap", "-q", "held.example", f"hash:{mail_node_root / 'mail' / 'suspended_domains'}"],
                           capture_output=True, text=True)  # fmt: skip
    assert query.stdout.startswith("450 ")


def node_spec(node: str, domains: list[str], suspended: list[str]) -> dict:
    return {"node": node, "domains": domains, "suspended": suspended, "aliases": [], "mailboxes": [
        {"address": f"a@{d}", "password_hash": "{ARGON2ID}$argon2id$v=19$m=8192,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
         "quota_mb": 0} for d in domains]}  # fmt: skip


def test_the_node_suspends_only_its_own_domains_and_not_their_subdomains(mail_node_root):  # noqa: F811
    """A node cannot suspend another node's domain (tenants share this machine); a served
    subdomain of a suspended domain is not caught by Postfix's parent-domain match (DUNNO)."""
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    agent_mail.mail_sync(mail_node_root, node_spec(b, ["sub.shop.example", "b.example"], []))
    result = agent_mail.mail_sync(mail_node_root, node_spec(a, ["shop.example"], ["shop.example", "b.example"]))
    assert result["suspended"] == 1
    maps = mail_node_root / "mail"

    def query(key: str, name: str) -> str:
        return subprocess.run(["postmap", "-q", key, f"hash:{maps / name}"], capture_output=True,
                              text=True).stdout.strip()  # fmt: skip

    assert query("shop.example", "suspended_domains") == agent_mail.SUSPENDED_REPLY
    assert query("sub.shop.example", "suspended_domains") == "DUNNO"
    assert query("b.example", "suspended_domains") == ""
    assert query("shop.example", "suspended_transport").startswith("retry:")
    assert (maps / "suspended_users").read_text() == "a@shop.example:\n"
    # Lifting it (the next sync of node a) empties the maps again.
    agent_mail.mail_sync(mail_node_root, node_spec(a, ["shop.example"], []))
    assert query("shop.example", "suspended_domains") == "" and (maps / "suspended_users").read_text() == ""
