"""Mail writes. Every change stores one ``mail.node.sync`` job for the domain's node; the job
renders the node's whole mail configuration as it is when it runs (agent/mail.py)."""

from __future__ import annotations

import base64

from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.db import IntegrityError, transaction

from agent.validate import mail as mail_rules
from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.limits import check_limit
from apps.common.rules import check
from apps.dns import services as dns_services
from apps.dns.models import Record, Zone
from apps.domains.services import domain_usable
from apps.jobs.lifecycle import before_delete
from apps.jobs.services import job_enqueue
from apps.names import claims
from apps.nodes.models import Node, NodeStatus, with_role

from . import validators
from .models import Alias, Autoresponder, Mailbox, MailDomain, MailDomainStatus


def hash_password(password: str) -> str:
    if len(password or "") < 10:
        raise InvalidInput("Use at least 10 characters.", field="password")
    if any(c in password for c in "\n\r\0"):
        raise InvalidInput("The password cannot hold line breaks or NUL.", field="password")
    # libsodium (Dovecot's ARGON2ID) verifies only parallelism 1.
    hasher = PasswordHasher(time_cost=3, memory_cost=settings.MPANEL_MAIL_ARGON2_MEMORY_KB, parallelism=1)
    return "{ARGON2ID}" + hasher.hash(password)


def _dkim_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=settings.MPANEL_DKIM_KEY_BITS)
    secret = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return secret, base64.b64encode(public).decode()


def _pick_node(node: Node | None) -> Node:
    if node is not None:
        if "mail" not in (node.roles or []):
            raise InvalidInput("This node does not have the mail role.", field="node")
        return node
    node = Node.objects.filter(with_role("mail"), status=NodeStatus.ACTIVE).order_by("hostname").first()
    if node is None:
        raise Conflict("No active node with the mail role: add one at /api/v1/ops/servers/.", code="no_mail_node")
    return node


def _sync(mail_domain: MailDomain, actor) -> None:
    MailDomain.objects.filter(node=mail_domain.node).update(status=MailDomainStatus.PENDING)
    job_enqueue(tenant=mail_domain.tenant, type="mail.node.sync", payload={"node": str(mail_domain.node_id)},
                actor=actor, obj=mail_domain.node)  # fmt: skip


def publish_records(mail_domain: MailDomain, actor=None) -> list[str]:
    """MX, SPF, DKIM and DMARC into the tenant's zone of the same name, when the zone is ours.
    A record of the same kind already there (any MX; a TXT starting with the same tag) is kept."""
    zone = Zone.objects.filter(name=mail_domain.name).exclude(status="deleting").first()
    if zone is None:
        return []
    wanted = [
        ("@", "MX", f"10 {settings.MPANEL_MAIL_HOSTNAME}.", None),
        ("@", "TXT", "v=spf1 mx -all", "v=spf1"),
        (f"{mail_domain.dkim_selector}._domainkey", "TXT", mail_domain.dkim_record, "v=DKIM1"),
        ("_dmarc", "TXT", "v=DMARC1; p=quarantine", "v=DMARC1"),
    ]
    added = []
    for name, rtype, content, tag in wanted:
        existing = Record.objects.filter(zone=zone, name=name, type=rtype)
        if any(tag is None or r.content.lstrip('"').startswith(tag) for r in existing):
            continue
        dns_services.record_create(zone=zone, name=name, type=rtype, content=content, actor=actor)
        added.append(f"{name} {rtype}")
    return added


@transaction.atomic
def mail_domain_create(*, tenant, name: str, node: Node | None = None, customer=None, catch_all: str = "",
                       actor=None) -> MailDomain:  # fmt: skip
    name = validators.mail_domain_name(name)
    node = _pick_node(node)
    claims.claim(tenant, [name])  # nobody else's tree (apps/names/claims.py); locked until commit
    secret, public = _dkim_pair()
    mail_domain = MailDomain(tenant=tenant, name=name, node=node, customer=customer,
                             catch_all=validators.address(catch_all, "catch_all") if catch_all else "",
                             dkim_secret_pem=secret, dkim_public_key=public)  # fmt: skip
    if customer is not None and not domain_usable(name=name, customer=customer):
        raise Conflict("This domain is held for another customer and not verified.", code="domain_not_verified")
    try:
        with transaction.atomic():
            mail_domain.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("This tenant has mail for this domain already.", field="name") from exc
    published = publish_records(mail_domain, actor)
    audit.record(action="mail.domain.create", obj=mail_domain,
                 after={**audit.snapshot(mail_domain), "published": published}, **audit.by(actor))  # fmt: skip
    _sync(mail_domain, actor)
    return mail_domain


@transaction.atomic
def mail_domain_update(*, mail_domain: MailDomain, data: dict, actor=None) -> MailDomain:
    mail_domain = MailDomain.objects.select_for_update(of=("self",)).get(pk=mail_domain.pk)
    with audit.change(mail_domain, "mail.domain.update", actor=actor):
        if "catch_all" in data:
            mail_domain.catch_all = validators.address(data["catch_all"], "catch_all") if data["catch_all"] else ""
        mail_domain.save()
    _sync(mail_domain, actor)
    return mail_domain


@transaction.atomic
def mail_domain_delete(*, mail_domain: MailDomain, actor=None) -> None:
    audit.deleted(mail_domain, "mail.domain.delete", actor=actor)
    node_id = mail_domain.node_id
    tenant = mail_domain.tenant
    mail_domain.delete()
    job_enqueue(tenant=tenant, type="mail.node.sync", payload={"node": str(node_id)}, actor=actor)


@transaction.atomic
def mail_domain_suspend(*, mail_domain: MailDomain, actor=None) -> bool:
    """Defer the domain's mail and refuse its logins (agent/mail.py's suspension maps). False when
    it was suspended already (nothing recorded, nothing pushed)."""
    return _set_suspended(mail_domain, True, "mail.domain.suspend", actor)


@transaction.atomic
def mail_domain_resume(*, mail_domain: MailDomain, actor=None) -> bool:
    """Lift the suspension: the held mail is delivered at the senders' next retry, logins work again."""
    return _set_suspended(mail_domain, False, "mail.domain.resume", actor)


def _set_suspended(mail_domain: MailDomain, value: bool, action: str, actor) -> bool:
    mail_domain = MailDomain.all_tenants.select_for_update(of=("self",)).get(pk=mail_domain.pk)
    if mail_domain.suspended == value:
        return False
    with audit.change(mail_domain, action, actor=actor):
        mail_domain.suspended = value
        mail_domain.save(update_fields=["suspended", "updated_at"])
    _sync(mail_domain, actor)
    return True


def _free(mail_domain: MailDomain, local: str, *, exclude=None) -> None:
    taken = Mailbox.objects.filter(mail_domain=mail_domain, local_part=local).exclude(pk=getattr(exclude, "pk", None))
    aliased = Alias.objects.filter(mail_domain=mail_domain, local_part=local).exclude(pk=getattr(exclude, "pk", None))
    if taken.exists() or aliased.exists():
        raise InvalidInput(f"{local}@{mail_domain.name} is a mailbox or alias already.", field="local_part")


@transaction.atomic
def mailbox_create(*, mail_domain: MailDomain, local_part: str, password: str, quota_mb: int = 1024,
                   enabled: bool = True, actor=None) -> Mailbox:  # fmt: skip
    local = validators.clean_local_part(local_part)
    _free(mail_domain, local)
    box = Mailbox.objects.create(tenant=mail_domain.tenant, mail_domain=mail_domain, local_part=local,
                                 password_hash=hash_password(password), enabled=enabled,
                                 quota_mb=check(mail_rules.quota_mb, quota_mb, field="quota_mb"))  # fmt: skip
    audit.created(box, "mail.mailbox.create", actor=actor)
    _sync(mail_domain, actor)
    # The customer's plan limits (apps.common.limits): last, with the row saved, so it is counted.
    check_limit(box.tenant_id, "mailboxes", customer_id=mail_domain.customer_id, obj=box, quota_mb=box.quota_mb)
    return box


@transaction.atomic
def mailbox_update(*, mailbox: Mailbox, data: dict, actor=None) -> Mailbox:
    box = Mailbox.objects.select_for_update(of=("self",)).select_related("mail_domain").get(pk=mailbox.pk)
    with audit.change(box, "mail.mailbox.update", actor=actor) as change:
        if "quota_mb" in data:
            box.quota_mb = check(mail_rules.quota_mb, data["quota_mb"], field="quota_mb")
        if "enabled" in data:
            box.enabled = data["enabled"]
        if data.get("password"):
            box.password_hash = hash_password(data["password"])
            change.mark(password="changed")  # the hash is never recorded; that it changed is
        box.save()
    _sync(box.mail_domain, actor)
    if "quota_mb" in data:
        check_limit(box.tenant_id, "mail_quota", customer_id=box.mail_domain.customer_id, obj=box,
                    quota_mb=box.quota_mb)  # fmt: skip
    return box


@transaction.atomic
def mailbox_delete(*, mailbox: Mailbox, actor=None) -> None:
    before_delete(mailbox, actor=actor)  # e.g. a final backup of the Maildir; a failed one stops the delete
    audit.deleted(mailbox, "mail.mailbox.delete", actor=actor)
    mail_domain = mailbox.mail_domain
    mailbox.delete()
    _sync(mail_domain, actor)


@transaction.atomic
def alias_create(*, mail_domain: MailDomain, local_part: str, destinations: list[str], actor=None) -> Alias:
    local = validators.clean_local_part(local_part)
    _free(mail_domain, local)
    alias = Alias.objects.create(tenant=mail_domain.tenant, mail_domain=mail_domain, local_part=local,
                                 destinations=validators.destinations(destinations))  # fmt: skip
    audit.created(alias, "mail.alias.create", actor=actor)
    _sync(mail_domain, actor)
    return alias


@transaction.atomic
def alias_update(*, alias: Alias, data: dict, actor=None) -> Alias:
    alias = Alias.objects.select_for_update(of=("self",)).select_related("mail_domain").get(pk=alias.pk)
    with audit.change(alias, "mail.alias.update", actor=actor):
        if "destinations" in data:
            alias.destinations = validators.destinations(data["destinations"])
        alias.save()
    _sync(alias.mail_domain, actor)
    return alias


@transaction.atomic
def alias_delete(*, alias: Alias, actor=None) -> None:
    audit.deleted(alias, "mail.alias.delete", actor=actor)
    mail_domain = alias.mail_domain
    alias.delete()
    _sync(mail_domain, actor)


@transaction.atomic
def autoresponder_create(*, mailbox: Mailbox, subject: str, body: str, enabled: bool = True, start_date=None,
                         end_date=None, interval_days: int = 1, actor=None) -> Autoresponder:  # fmt: skip
    box = Mailbox.objects.select_for_update(of=("self",)).select_related("mail_domain").get(pk=mailbox.pk)
    text = validators.responder_text({"subject": subject, "body": body, "interval_days": interval_days,
                            "start_date": start_date, "end_date": end_date}, None)  # fmt: skip
    if Autoresponder.objects.filter(mailbox=box).exists():
        raise InvalidInput(f"{box.address} has an autoresponder already; change that one.", field="mailbox")
    responder = Autoresponder.objects.create(tenant=box.tenant, mailbox=box, enabled=enabled, start_date=start_date,
                                             end_date=end_date, interval_days=interval_days, **text)  # fmt: skip
    audit.created(responder, "mail.autoresponder.create", actor=actor)
    _sync(box.mail_domain, actor)
    return responder


@transaction.atomic
def autoresponder_update(*, autoresponder: Autoresponder, data: dict, actor=None) -> Autoresponder:
    responder = (
        Autoresponder.objects.select_for_update(of=("self",))
        .select_related("mailbox__mail_domain")
        .get(pk=autoresponder.pk)
    )
    text = validators.responder_text(data, responder)
    with audit.change(responder, "mail.autoresponder.update", actor=actor):
        for key in ("enabled", "start_date", "end_date", "interval_days"):
            if key in data:
                setattr(responder, key, data[key])
        for key, value in text.items():
            setattr(responder, key, value)
        responder.save()
    _sync(responder.mailbox.mail_domain, actor)
    return responder


@transaction.atomic
def autoresponder_delete(*, autoresponder: Autoresponder, actor=None) -> None:
    audit.deleted(autoresponder, "mail.autoresponder.delete", actor=actor)
    mail_domain = autoresponder.mailbox.mail_domain
    autoresponder.delete()
    _sync(mail_domain, actor)


def _responder_spec(box: Mailbox) -> dict | None:
    responder = getattr(box, "autoresponder", None)
    if responder is None or not responder.enabled:
        return None
    return {
        "subject": responder.subject,
        "body": responder.body,
        "start": responder.start_date.isoformat() if responder.start_date else None,
        "end": responder.end_date.isoformat() if responder.end_date else None,
        "days": responder.interval_days,
    }


def node_spec(node_id) -> dict:
    """Everything the node serves, as plain data for agent/mail.py."""
    domains = list(MailDomain.objects.filter(node_id=node_id).order_by("name"))
    boxes = Mailbox.objects.filter(mail_domain__node_id=node_id).select_related("mail_domain", "autoresponder")
    aliases = Alias.objects.filter(mail_domain__node_id=node_id).select_related("mail_domain")
    spec_aliases = [{"source": str(a), "destinations": list(a.destinations)} for a in aliases]
    spec_aliases += [{"source": f"@{d.name}", "destinations": [d.catch_all]} for d in domains if d.catch_all]
    return {
        "node": str(node_id),
        "domains": [d.name for d in domains],
        "suspended": [d.name for d in domains if d.suspended],
        "mailboxes": [
            {
                "address": b.address,
                "password_hash": b.password_hash,
                "quota_mb": b.quota_mb,
                "enabled": b.enabled,
                "autoresponder": _responder_spec(b),
            }
            for b in boxes
        ],
        "aliases": spec_aliases,
    }
