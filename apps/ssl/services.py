"""SSL certificate writes: issue (ACME), upload, renew, revoke, delete; the issuance steps a job
runs; installation on the website's node; the renewal sweep and its alerts (docs/modules/ssl.md).

Issuance is a sequence of idempotent steps, each committed as it completes (``issue_run``):
the account (registered once per tenant and directory), the order (its URL, CSR and new key stored
before anything else happens), the challenges (what was put up is recorded so it is taken down),
finalisation and download. A worker killed anywhere resumes from what the row says: the same order,
never a second one. A renewal keeps the current certificate serving until the new one is installed.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from agent import pem
from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.registry import Registry
from apps.dns import services as dns_services
from apps.dns.models import Record, Zone
from apps.jobs.lifecycle import Lifecycle, Move
from apps.jobs.models import Job
from apps.jobs.registry import PermanentError
from apps.jobs.services import job_enqueue
from apps.nodes.drivers import driver_for
from apps.nodes.models import Node
from apps.security.events import record_event
from apps.security.models import EventType
from apps.tenancy.models import Membership, Tenant
from apps.tenancy.roles import Role
from apps.tenancy.scoping import all_tenants, tenant_scope
from apps.websites import services as website_services
from apps.websites.models import Website, WebsiteStatus

from . import ca, validators
from .crypto import seal, unseal
from .models import AcmeAccount, Certificate, CertificateSource, CertificateStatus, Challenge, SslSettings

S = CertificateStatus
ISSUE_JOB = "ssl.certificate.issue"
INSTALL_JOB = "ssl.certificate.install"
MAIL_JOB = "ssl.mail.install"  # payload: the mail node's id; pushes every certificate bound to it

# Certificates without a website whose HTTP-01 challenges the panel answers itself (a verified custom
# portal domain points at the panel, not at a web node): callables(cert) -> bool, registered by the
# module that proved the name (white-label). Nothing else gets a panel-answered challenge.
PANEL_SERVED: Registry[Callable[[Certificate], bool]] = Registry("panel-served certificate")
# Called in the transaction that makes a newly issued (or renewed) certificate the one served:
# callables(cert), so a module that serves the certificate itself (white-label) takes the new one.
ISSUED: Registry[Callable[[Certificate], None]] = Registry("certificate issued hook")

certs: Lifecycle[Certificate] = Lifecycle(
    model=Certificate,
    kind="ssl.certificate",
    payload_key="certificate",
    noun="certificate",
    related=("tenant", "website"),
    moves={
        "revoke": Move(
            to=S.REVOKED,
            sources={S.VALID, S.RENEWING, S.EXPIRED},
            refusal="Only a valid or expired certificate can be revoked; this one is {status}.",
        ),
        "delete": Move(to=S.DELETED, not_from={S.DELETED}, refusal="This certificate is deleted already."),
    },
    gone=(S.DELETED,),
)


# --- the tenant's requests --------------------------------------------------------------------------


def _website(tenant, website) -> Website | None:
    if website is None:
        return None
    if website.tenant_id != tenant.pk or website.status in (WebsiteStatus.DELETING, WebsiteStatus.DELETED):
        raise InvalidInput("The website must be one of yours and not deleted.", field="website")
    return website


def _zone_for(name: str) -> Zone | None:
    """The tenant's zone that holds ``name`` (the longest match)."""
    base = name.removeprefix("*.")
    labels = base.split(".")
    candidates = [".".join(labels[i:]) for i in range(len(labels))]
    zones = {z.name: z for z in Zone.objects.filter(name__in=candidates).select_related("node")}
    for candidate in candidates:
        if candidate in zones:
            return zones[candidate]
    return None


def _check_names(names: list[str], website: Website | None, challenge: str) -> None:
    """Names the tenant may have a certificate for: a website's own hostnames (HTTP-01), or names in
    one of its DNS zones (DNS-01). Another tenant's name is never one of them."""
    if challenge == Challenge.HTTP_01:
        if website is None:
            raise InvalidInput("HTTP-01 validates through a website: name it (or use dns-01).", field="website")
        wildcard = next((n for n in names if n.startswith("*.")), None)
        if wildcard:
            raise InvalidInput(f"{wildcard}: a wildcard needs the dns-01 challenge.", field="names")
        outside = [n for n in names if n not in website.domains]
        if outside:
            raise InvalidInput(f"Not a hostname of {website.primary_domain}: {', '.join(outside)}.", field="names")
        return
    outside = [n for n in names if _zone_for(n) is None]
    if outside:
        raise InvalidInput(f"No DNS zone of yours holds {', '.join(outside)} (dns-01 writes the TXT record there).",
                           field="names")  # fmt: skip


@transaction.atomic
def certificate_issue(*, tenant, names: list[str] | None = None, website: Website | None = None,
                      challenge: str = Challenge.HTTP_01, hsts: bool = False, actor=None,
                      automatic: bool = False) -> Certificate:  # fmt: skip
    """A certificate from the ACME CA for ``names`` (default: the website's hostnames); a job issues
    it and installs it on the website. ``automatic``: nobody asked (a plan with SSL, a portal
    domain), so nobody watches it: a failed issuance is retried by the sweep with backoff."""
    website = _website(tenant, website)
    if not names:
        if website is None:
            raise InvalidInput("Name the hostnames, or a website.", field="names")
        names = website.domains
    names = validators.names(names)
    _check_names(names, website, challenge)
    if website is not None and not website.https:
        raise InvalidInput("Turn HTTPS on for the website first.", field="website")
    cert = Certificate(tenant=tenant, names=names, website=website, source=CertificateSource.ACME,
                       challenge=challenge, status=S.PENDING, hsts=hsts, automatic=automatic)  # fmt: skip
    cert.save(force_insert=True)
    audit.created(cert, "ssl.certificate.create", actor=actor)
    certs.enqueue(cert, ISSUE_JOB, actor=actor)
    return cert


@transaction.atomic
def certificate_issue_panel_served(*, tenant, names: list[str], actor=None) -> Certificate:
    """A certificate from the ACME CA for names whose HTTP-01 challenges the panel itself answers
    (``PANEL_SERVED``; the caller proved the names are the tenant's: a verified custom portal
    domain). The same issue job, renewal and sweep as every ACME certificate; no website. Automatic:
    nobody asked for it, so a failed issuance is retried by the sweep like a plan's."""
    names = validators.names(names)
    cert = Certificate(tenant=tenant, names=names, source=CertificateSource.ACME, challenge=Challenge.HTTP_01,
                       status=S.PENDING, automatic=True)  # fmt: skip
    cert.save(force_insert=True)
    audit.created(cert, "ssl.certificate.create", actor=actor)
    certs.enqueue(cert, ISSUE_JOB, actor=actor)
    return cert


@transaction.atomic
def certificate_upload(*, tenant, certificate: str, private_key: str, chain: str = "",
                       website: Website | None = None, hsts: bool = False, actor=None) -> Certificate:  # fmt: skip
    """A customer's own certificate: checked whole (``validators.upload``) before anything is stored;
    then installed on the website the same way as an issued one."""
    website = _website(tenant, website)
    if website is not None and not website.https:
        raise InvalidInput("Turn HTTPS on for the website first.", field="website")
    facts = validators.upload(certificate, chain, private_key, names=website.domains if website else None)
    cert = Certificate(tenant=tenant, names=facts["names"], website=website, source=CertificateSource.UPLOADED,
                       status=S.VALID, hsts=hsts)  # fmt: skip
    _store(cert, facts, private_key)
    cert.save(force_insert=True)
    audit.created(cert, "ssl.certificate.upload", actor=actor)
    if website is not None:
        certs.enqueue(cert, INSTALL_JOB, actor=actor)
    return cert


@transaction.atomic
def certificate_update(*, certificate: Certificate, data: dict, actor=None) -> Certificate:
    cert = certs.locked(certificate)
    if cert.status in (S.DELETED, S.REVOKED):
        raise Conflict(f"A {cert.status} certificate cannot be changed.")
    hsts = cert.hsts
    with audit.change(cert, "ssl.certificate.update", actor=actor) as change:
        if "hsts" in data:
            cert.hsts = bool(data["hsts"])
        if "revoke_on_delete" in data:  # None: the tenant's SSL settings decide
            cert.revoke_on_delete = None if data["revoke_on_delete"] is None else bool(data["revoke_on_delete"])
        if audit.snapshot(cert) == change.before:
            change.skip()
            return cert
        cert.save()
    if cert.hsts != hsts and cert.website_id and cert.serving:  # only HSTS changes what the site serves
        certs.enqueue(cert, INSTALL_JOB, actor=actor)
    return cert


@transaction.atomic
def certificate_renew(*, certificate: Certificate, actor=None, automatic: bool = False) -> Certificate:
    """Renew now (a new ACME order; the current certificate keeps serving until the new one is in)."""
    cert = certs.locked(certificate)
    if cert.source != CertificateSource.ACME:
        raise Conflict("Only a certificate from the ACME CA is renewed here; upload the new one instead.",
                       code="not_acme")  # fmt: skip
    if cert.status not in (S.VALID, S.EXPIRED, S.FAILED):
        raise Conflict(f"Only a valid, expired or failed certificate can be renewed; this one is {cert.status}.")
    to = S.RENEWING if cert.certificate_pem and cert.status == S.VALID else S.ISSUING
    certs.transition(cert, to, "ssl.certificate.renew", actor=audit.SYSTEM if automatic else actor,
                     retry_after=None)  # fmt: skip
    certs.enqueue(cert, ISSUE_JOB, actor=actor)
    return cert


def certificate_revoke(*, certificate: Certificate, actor=None) -> Certificate:
    """Stops serving it at once (the website falls back to its self-signed certificate) and, for an
    issued one, asks the CA to revoke it (a job, retried while the CA is unreachable)."""
    return certs.move(certificate, "revoke", actor=actor, revoked_at=timezone.now())


def certificate_delete(*, certificate: Certificate, actor=None, revoke: bool | None = None) -> Certificate:
    """Removes it from the website (a job); the row stays, ``deleted``, for the audit trail.
    ``revoke`` (None: the tenant's ``revoke_on_delete``): an issued certificate still valid is
    revoked at its CA by the same job (retried while the CA is unreachable)."""
    with transaction.atomic():
        cert = certs.locked(certificate)
        certs.check(cert, "delete")
        if revoke is None:
            revoke = revokes_on_delete(cert)
        at_ca = bool(revoke) and _revocable(cert)
        certs.transition(cert, S.DELETED, "ssl.certificate.delete", actor=actor,
                         **({"revoked_at": timezone.now()} if at_ca else {}))  # fmt: skip
        certs.enqueue(cert, "ssl.certificate.delete", actor=actor, **({"revoke": True} if at_ca else {}))
        return cert


@transaction.atomic
def certificate_install_mail(*, certificate: Certificate, node: Node | None, actor=None) -> Certificate:
    """Bind the certificate to a mail node (``None``: unbind): a job then pushes every certificate
    bound to that node to its Postfix and Dovecot (the node's ``mail_tls``), the first bound the
    default one, the others served by SNI for their names; a renewal pushes again. Only a node of
    the certificate's own tenant with the ``mail`` role, and a certificate that serves."""
    cert = certs.locked(certificate)
    if node is not None:
        if node.tenant_id != cert.tenant_id:  # fail-closed even if a caller skipped the scoped lookup
            raise InvalidInput("No such node.", field="node")
        if "mail" not in (node.roles or []):
            raise InvalidInput("This node does not have the mail role.", field="node")
        if not cert.serving:
            raise Conflict(f"Only a valid certificate can be installed on a mail node; this one is {cert.status}.")
    previous = cert.mail_node_id
    with audit.change(cert, "ssl.certificate.install_mail", actor=actor):
        cert.mail_node = node
        cert.save(update_fields=["mail_node", "updated_at"])
    for node_id in {previous, node.pk if node else None} - {None}:
        mail_push_enqueue(cert.tenant, node_id, actor=actor)
    return cert


def mail_push_enqueue(tenant, node_id, *, actor=None) -> None:
    node = Node.all_tenants.get(pk=node_id)
    job_enqueue(tenant=tenant, type=MAIL_JOB, payload={"node": str(node_id)}, actor=actor, obj=node)


def mail_certificates(node_id) -> list[Certificate]:
    """What the mail node serves: its tenant's certificates bound to it that serve and have not
    expired, the first bound (oldest) first (the default, for clients that send no SNI name)."""
    return list(
        Certificate.all_tenants.filter(
            mail_node_id=node_id, status__in=[S.VALID, S.RENEWING], not_after__gt=timezone.now()
        )
        .exclude(certificate_pem="")
        .exclude(key_encrypted="")
        .order_by("created_at", "pk")
    )


def mail_install_run(job: Job) -> dict:
    """The job ``ssl.mail.install``: the node's whole set of mail certificates, pushed in one call
    under the node's row lock (two pushes never interleave; the later one carries the latest set)."""
    with transaction.atomic():
        node = Node.all_tenants.select_for_update().filter(pk=job.payload.get("node")).first()
        if node is None:
            return {"skipped": "gone"}
        chosen = [c for c in mail_certificates(node.pk) if c.tenant_id == node.tenant_id]
        # Decrypted only into the call to the node; never stored, logged or answered.
        spec = {"certificates": [{"certificate": c.certificate_pem + c.chain_pem,
                                  "private_key": unseal(c.key_encrypted)} for c in chosen]}  # fmt: skip
        result = driver_for(node).mail_tls(spec)
    served = {entry.get("sha256") for entry in result.get("certificates") or []}
    now = timezone.now()
    for cert in chosen:
        if cert.website_id is None and cert.fingerprint in served:
            Certificate.all_tenants.filter(pk=cert.pk).update(installed_fingerprint=cert.fingerprint,
                                                              installed_at=now)  # fmt: skip
    return {"node": str(node.pk), "serving": sorted(c.fingerprint for c in chosen)}


def _revocable(cert: Certificate) -> bool:
    """Issued by our CA, with a certificate the CA can still revoke (not revoked, not expired)."""
    return (
        cert.source == CertificateSource.ACME
        and bool(cert.certificate_pem)
        and cert.account_id is not None
        and cert.status in (S.VALID, S.RENEWING)
        and (cert.not_after is None or cert.not_after > timezone.now())
    )


def revokes_on_delete(cert: Certificate, tenant_settings: SslSettings | None = None) -> bool:
    """Whether deleting it (or its website) revokes it when the delete does not say: the
    certificate's own ``revoke_on_delete``, else the tenant's SSL settings."""
    if cert.revoke_on_delete is not None:
        return cert.revoke_on_delete
    return (tenant_settings or settings_for(cert.tenant_id)).revoke_on_delete


def settings_for(tenant) -> SslSettings:
    """The tenant's SSL settings (unsaved defaults when it never changed them)."""
    tenant_id = getattr(tenant, "pk", tenant)
    return SslSettings.all_tenants.filter(tenant_id=tenant_id).first() or SslSettings(tenant_id=tenant_id)


@transaction.atomic
def settings_update(*, tenant, data: dict, actor=None) -> SslSettings:
    row = SslSettings.objects.select_for_update().filter(tenant=tenant).first()
    if row is None:
        row = SslSettings(tenant=tenant)
        row.save(force_insert=True)
        audit.created(row, "ssl.settings.create", actor=actor)
    with audit.change(row, "ssl.settings.update", actor=actor) as change:
        if "revoke_on_delete" in data:
            row.revoke_on_delete = bool(data["revoke_on_delete"])
        if audit.snapshot(row) == change.before:
            change.skip()
            return row
        row.save()
    return row


def website_deleted(site: Website, *, actor=None, revoke_certificates: bool | None = None) -> list[Certificate]:
    """A deleted website's certificates: revoked at the CA when the tenant asks (the delete's
    ``revoke``, else each certificate's ``revoke_on_delete``, else the tenant's); otherwise they
    stay as they are (the sweep no longer renews them: there is no site to validate)."""
    tenant_settings = settings_for(site.tenant_id)
    done = []
    for cert in Certificate.all_tenants.filter(
        tenant_id=site.tenant_id, website=site, status__in=[S.VALID, S.RENEWING]
    ):
        revoke = revoke_certificates if revoke_certificates is not None else revokes_on_delete(cert, tenant_settings)
        if revoke and _revocable(cert):
            done.append(certificate_revoke(certificate=cert, actor=actor))
    return done


def key_pem(*, certificate: Certificate, actor=None) -> str:
    """The private key, for an ADMIN+ who re-authenticated; the read itself is audited."""
    if not certificate.key_encrypted:
        raise Conflict("This certificate has no key yet.", code="no_key")
    audit.record(action="ssl.certificate.key_download", obj=certificate, **audit.by(actor))
    return unseal(certificate.key_encrypted)


# --- storing what was issued or uploaded ------------------------------------------------------------


def _dt(value: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)


def _store(cert: Certificate, facts: dict, key: str) -> None:
    cert.certificate_pem = facts["certificate"]
    cert.chain_pem = facts["chain"]
    cert.key_encrypted = seal(key)
    cert.issuer = facts["issuer"][:500]
    cert.serial = facts["serial"][:64]
    cert.fingerprint = facts["sha256"]
    cert.not_before, cert.not_after = _dt(facts["not_before"]), _dt(facts["not_after"])
    lifetime = cert.not_after - cert.not_before
    # Renew at two thirds of the lifetime (Let's Encrypt's advice, Certbot's and Caddy's default).
    cert.renew_after = cert.not_before + lifetime * 2 / 3
    cert.names = facts["names"] if not cert.names else cert.names


def fullchain(cert: Certificate) -> str:
    return cert.certificate_pem + cert.chain_pem


# --- the issuance steps (the job ``ssl.certificate.issue``) ------------------------------------------


def _account(tenant) -> AcmeAccount:
    """The tenant's account at the configured directory: created (key sealed) and registered once."""
    directory = ca.directory_url()
    with transaction.atomic():
        account = AcmeAccount.objects.select_for_update().filter(directory=directory).first()
        if account is None:
            email = _contact(tenant)
            account = AcmeAccount.objects.create(tenant=tenant, directory=directory, email=email,
                                                 key_encrypted=seal(ca.new_key_pem()))  # fmt: skip
            audit.created(account, "ssl.account.create", actor=audit.SYSTEM)
        if not account.uri:
            client = ca.connect(unseal(account.key_encrypted))
            with audit.change(account, "ssl.account.register", actor=audit.SYSTEM):
                account.uri = ca.register(client, account.email)
                account.save()
    return account


def _contact(tenant) -> str:
    owner = (
        Membership.objects.filter(tenant=tenant, role__in=[Role.OWNER, Role.ADMIN])
        .select_related("user")
        .order_by("created_at")
        .first()
    )
    return getattr(getattr(owner, "user", None), "email", "") or ""


def _open_order(pk, account: AcmeAccount) -> Certificate:
    """Step 1: the order, placed once. Its URL, CSR and key are committed with it."""
    with transaction.atomic():
        cert = certs.locked(pk)
        if cert.order_url:
            return cert
        if cert.status == S.PENDING:
            cert.status = S.ISSUING
        key = ca.new_key_pem()
        csr = ca.make_csr(key, cert.names)
        client = ca.connect(unseal(account.key_encrypted), account.uri)
        order = ca.new_order(client, csr)
        cert.account, cert.order_url, cert.order_csr = account, order.uri, csr
        cert.pending_key_encrypted = seal(key)
        cert.save()
        audit.record(action="ssl.certificate.order", obj=cert, actor=None, after={"order": order.uri})
        return cert


def _remember(pk, entry: dict) -> None:
    with transaction.atomic():
        cert = certs.locked(pk)
        if entry not in cert.challenges:
            cert.challenges = [*cert.challenges, entry]
            cert.save(update_fields=["challenges", "updated_at"])


def _present_http(cert: Certificate, client: ca.Client, challb) -> None:
    token, answer = ca.http01(client, challb)
    site = cert.website
    if site is None and any(served(cert) for served in PANEL_SERVED):
        # The panel answers it (``selectors.panel_challenge``) once this entry is committed.
        _remember(cert.pk, {"kind": "panel", "token": token, "answer": answer})
        return
    if site is None:
        raise PermanentError("The website of this certificate is gone.")
    _remember(cert.pk, {"kind": "http", "site": site.site_id, "node": str(site.node_id), "token": token})
    driver_for(site.node).acme_challenge_put(site.site_id, token, answer)


def _present_dns(cert: Certificate, client: ca.Client, challb, name: str) -> None:
    owner, value = ca.dns01(client, challb, name)
    zone = _zone_for(name)
    if zone is None:
        raise ca.CaError(f"No DNS zone of yours holds {name} any more.", permanent=True)
    relative = owner.removesuffix("." + zone.name) if owner != zone.name else "@"
    content = f'"{value}"'
    record = zone.records.filter(name=relative, type="TXT", content=content).first()
    if record is None:
        record = dns_services.record_create(zone=zone, name=relative, type="TXT", content=content, ttl=60,
                                            actor=audit.SYSTEM)  # fmt: skip
    _remember(cert.pk, {"kind": "dns", "record": str(record.pk)})
    _wait_zone_served(zone.pk)


def _wait_zone_served(zone_pk) -> None:
    """The TXT record is answered once the zone's push (its own job) reached the serial."""
    deadline = time.monotonic() + settings.MPANEL_ACME_DNS_WAIT_SECONDS
    while True:
        zone = Zone.objects.get(pk=zone_pk)
        if zone.served_serial is not None and zone.served_serial >= zone.serial:
            return
        if time.monotonic() > deadline:
            raise ca.CaError(f"The DNS zone {zone.name} has not been published yet; trying again.")
        time.sleep(0.5)


def _take_down(pk) -> None:
    """Removes what was put up to answer challenges (best effort; it is harmless where it stays)."""
    cert = Certificate.objects.select_related("website__node").filter(pk=pk).first()
    if cert is None or not cert.challenges:
        return
    left = []
    for entry in cert.challenges:
        if entry["kind"] == "panel":
            continue  # answered from this row: dropping the entry takes it down
        try:
            if entry["kind"] == "http" and cert.website is not None:
                driver_for(cert.website.node).acme_challenge_remove(entry["site"], entry["token"])
            elif entry["kind"] == "dns":
                record = Record.objects.filter(pk=entry["record"]).select_related("zone").first()
                if record is not None:
                    dns_services.record_delete(record=record, actor=audit.SYSTEM)
        except Exception:  # the node or zone is unreachable: try again at the next issuance
            left.append(entry)
    Certificate.objects.filter(pk=pk).update(challenges=left)


def _authorize(cert: Certificate, client: ca.Client, order) -> None:
    """Step 2: answer every pending authorisation, then wait for all to be valid."""
    pending = [a for a in order.authorizations if ca.status(a) == "pending"]
    for authzr in pending:
        challb = ca.pick(authzr, cert.challenge)
        name = authzr.body.identifier.value
        if authzr.body.wildcard:
            name = f"*.{name}"
        if cert.challenge == Challenge.HTTP_01:
            _present_http(cert, client, challb)
        else:
            _present_dns(cert, client, challb, name)
        if ca.status(challb) == "pending":
            ca.answer(client, challb)
    for authzr in order.authorizations:
        if ca.status(authzr) != "valid":
            ca.wait_valid(client, authzr, settings.MPANEL_ACME_VALIDATION_SECONDS)


def _downloaded(pk, chain_pem: str) -> Certificate:
    """Step 4: the new certificate becomes the one served; the order is done."""
    with transaction.atomic():
        cert = certs.locked(pk)
        key = unseal(cert.pending_key_encrypted)
        try:
            facts = pem.check_bundle(chain_pem, "", key)
        except pem.BadBundle as exc:
            raise ca.CaError(f"The CA sent a certificate that cannot be served: {exc.message}", permanent=True) from exc
        with audit.change(cert, "ssl.certificate.issued", actor=audit.SYSTEM):
            _store(cert, facts, key)
            cert.status = S.VALID
            cert.order_url = cert.order_csr = cert.pending_key_encrypted = ""
            cert.failures, cert.retry_after, cert.alerted_at, cert.last_error = 0, None, None, ""
            cert.save()
        for hook in ISSUED:
            hook(cert)
        if cert.website_id:
            certs.enqueue(cert, INSTALL_JOB)
        if cert.mail_node_id:  # the renewed certificate goes to the mail node too
            mail_push_enqueue(cert.tenant, cert.mail_node_id)
        return cert


def issue_run(job: Job) -> dict:
    """The job ``ssl.certificate.issue``: run (or resume) the steps; on a permanent failure, or the
    last attempt, give up (``_give_up``); otherwise the job is retried with backoff."""
    pk = job.payload.get("certificate")
    cert = Certificate.objects.filter(pk=pk).first()
    if cert is None:
        return {"skipped": "gone"}
    if cert.status not in (S.PENDING, S.ISSUING, S.RENEWING):
        return {"skipped": cert.status}
    try:
        account = _account(cert.tenant)
        cert = _open_order(pk, account)
        client = ca.connect(unseal(account.key_encrypted), account.uri)
        order = ca.fetch_order(client, cert.order_url, cert.order_csr)
        cert = Certificate.objects.select_related("website__node").get(pk=pk)
        if ca.status(order) == "pending":
            _authorize(cert, client, order)
            order = ca.fetch_order(client, cert.order_url, cert.order_csr)
        after_authorization(cert)
        chain_pem = ca.finalize(client, order, settings.MPANEL_ACME_VALIDATION_SECONDS)
        cert = _downloaded(pk, chain_pem)
    except Exception as exc:
        permanent = bool(getattr(exc, "permanent", False)) or isinstance(exc, PermanentError)
        message = getattr(exc, "message", None) or str(exc)
        if permanent or job.attempts >= job.max_attempts:
            _give_up(pk, message)
            raise PermanentError(message) from exc
        Certificate.objects.filter(pk=pk).update(last_error=message[:2000])
        raise
    _take_down(pk)
    refresh_renewal_info(pk)
    cert = Certificate.objects.get(pk=pk)
    return {"certificate": str(pk), "serial": cert.serial, "not_after": cert.not_after.isoformat()}


def refresh_renewal_info(pk) -> bool:
    """Ask the CA when to renew (ARI, RFC 9773) when its directory offers ``renewalInfo``: the time
    it picks inside its suggested window becomes ``renew_after`` (a CA that must revoke early moves
    the window forward and the sweep follows). Without ARI, two thirds of the lifetime stays. Best
    effort: a CA that does not answer changes nothing. Answers whether ``renew_after`` changed."""
    cert = Certificate.all_tenants.select_related("account").filter(pk=pk).first()
    if cert is None or cert.account is None or not cert.certificate_pem or cert.source != CertificateSource.ACME:
        return False
    try:
        client = ca.connect(unseal(cert.account.key_encrypted), cert.account.uri)
    except ca.CaError:
        return False
    at, ask_again = ca.renewal_window(client, cert.certificate_pem)
    with transaction.atomic():
        cert = Certificate.all_tenants.select_for_update().filter(pk=pk, status=S.VALID).first()
        if cert is None:
            return False
        changed = at is not None and at != cert.renew_after
        if changed:
            with audit.change(cert, "ssl.certificate.renewal_info", actor=audit.SYSTEM):
                cert.renew_after = at
                cert.save(update_fields=["renew_after", "updated_at"])
        Certificate.all_tenants.filter(pk=pk).update(ari_next_at=ask_again)
    return changed


def after_authorization(cert: Certificate) -> None:
    """Between authorisation and finalisation: nothing to do; a seam where a test kills the worker."""


def _retry_delay(failures: int) -> timedelta:
    return timedelta(seconds=min(settings.MPANEL_ACME_RETRY_SECONDS * 2 ** max(failures - 1, 0), 86400))


def issue_retries() -> int:
    """How many failed attempts an automatic issuance gets before the sweep stops retrying it."""
    return max(int(getattr(settings, "MPANEL_ACME_ISSUE_RETRIES", 10)), 1)


def _give_up(pk, message: str) -> None:
    """This attempt is over: the order is dropped (the next attempt places a new one). A renewal
    leaves the current certificate serving (``valid``; the sweep tries again after a backoff); a
    first issuance is ``failed`` with the CA's error, and an automatic one gets its next attempt
    (``retry_after``, doubling) until MPANEL_ACME_ISSUE_RETRIES failures. The alert (security
    event, e-mail) is raised by the first failure since the last success only, not by each retry."""
    _take_down(pk)
    with transaction.atomic():
        cert = Certificate.all_tenants.select_for_update().filter(pk=pk).first()
        if cert is None or cert.status not in (S.PENDING, S.ISSUING, S.RENEWING):
            return
        before = cert.status
        cert.failures += 1
        cert.order_url = cert.order_csr = cert.pending_key_encrypted = ""
        cert.last_error = message[:2000]
        retrying = True
        if before == S.RENEWING and cert.certificate_pem:
            cert.status = S.VALID
            cert.retry_after = timezone.now() + _retry_delay(cert.failures)
        else:
            cert.status = S.FAILED
            retrying = cert.automatic and cert.failures < issue_retries()
            cert.retry_after = timezone.now() + _retry_delay(cert.failures) if retrying else None
        cert.save()
        audit.record(action="ssl.certificate.failed", obj=cert, actor=None, tenant=cert.tenant,
                     changes={"status": [before, cert.status]},
                     after={"error": message[:500], "failures": cert.failures,
                            "retry_after": cert.retry_after.isoformat() if cert.retry_after else None})  # fmt: skip
        if cert.failures > 1:
            return  # alerted at the first failure; each retry is in the audit trail
        # A site left without a trusted certificate is a security matter: the tenant's admins see it
        # in their security events, not only in the certificate's row.
        reason = "renewal" if before == S.RENEWING else "issuance"
        record_event(EventType.SSL_ISSUANCE_FAILED, tenant=cert.tenant_id, reason=reason, actor=None,
                     data={"certificate": str(cert.pk), "names": cert.names[:10], "error": message[:500],
                           "retry_after": cert.retry_after.isoformat() if cert.retry_after else None})  # fmt: skip
        if before != S.RENEWING:  # a renewal's own alert is the expiring one (the old certificate serves)
            later = (f" It is tried again automatically (next: {cert.retry_after:%Y-%m-%d %H:%M} UTC)."
                     if retrying and cert.retry_after else " Retry it once the cause is fixed.")  # fmt: skip
            _notify(cert, f"No certificate could be issued for {cert}",
                    f"The certificate authority refused or could not be reached: {message[:500]}{later} "
                    "Until then the website serves a self-signed certificate.")  # fmt: skip


# --- installation (the job ``ssl.certificate.install``) ------------------------------------------


def install_run(job: Job) -> dict:
    """Converge the certificate's website: its vhost names the certificate the site should serve
    (``hooks.tls_part``), checked by ``nginx -t`` on the node before it is swapped in."""
    pk = job.payload.get("certificate")
    cert = Certificate.objects.filter(pk=pk).first()
    if cert is not None and cert.mail_node_id and job.type != INSTALL_JOB:
        # Revoked or deleted: the mail node is pushed its set without it.
        mail_push_enqueue(cert.tenant, cert.mail_node_id)
    if cert is None or cert.website_id is None:
        return {"skipped": "no website"}
    with transaction.atomic():
        site = website_services.sites.locked(cert.website_id)
        if site.status in (WebsiteStatus.DELETING, WebsiteStatus.DELETED):
            return {"skipped": site.status}
        result = website_services.website_converge(site=site, job_type="website.update")
    served = (result.get("certificate") or {}).get("sha256", "")
    Certificate.objects.filter(pk=pk).update(installed_fingerprint=served, installed_at=timezone.now())
    return {"website": str(site.pk), "serving": served}


def revoke_run(job: Job) -> dict:
    """The job ``ssl.certificate.revoke``: the site stops serving it; the CA is told (issued ones)."""
    pk = job.payload.get("certificate")
    cert = Certificate.objects.select_related("account").filter(pk=pk).first()
    if cert is None:
        return {"skipped": "gone"}
    told = False
    if cert.source == CertificateSource.ACME and cert.certificate_pem and cert.account is not None:
        client = ca.connect(unseal(cert.account.key_encrypted), cert.account.uri)
        ca.revoke(client, cert.certificate_pem)
        told = True
    install_run(job)
    return {"certificate": str(pk), "revoked_at_ca": told}


def delete_run(job: Job) -> dict:
    """The job ``ssl.certificate.delete``: off the website; revoked at the CA first when asked."""
    revoked = False
    if job.payload.get("revoke"):
        cert = Certificate.objects.select_related("account").filter(pk=job.payload.get("certificate")).first()
        if cert is not None and cert.account is not None and cert.certificate_pem:
            client = ca.connect(unseal(cert.account.key_encrypted), cert.account.uri)
            ca.revoke(client, cert.certificate_pem)
            revoked = True
    return {**install_run(job), "revoked_at_ca": revoked}


# --- renewal sweep and alerts (periodic: ``ssl.sweep``) -------------------------------------------


def sweep(*, now=None) -> dict:
    """Renew what is due, mark what expired, and alert about what expires soon and is not renewed."""
    now = now or timezone.now()
    renewed = retried = expired = alerted = 0
    with all_tenants():
        asking = list(
            Certificate.all_tenants.filter(status=S.VALID, source=CertificateSource.ACME, account__isnull=False)
            .exclude(ari_next_at__gt=now)
            .values_list("pk", flat=True)
        )
    for pk in asking:  # the CA's renewal information first: it may move renew_after into the past
        refresh_renewal_info(pk)
    with all_tenants():
        due = list(
            Certificate.all_tenants.filter(status=S.VALID, source=CertificateSource.ACME, renew_after__lte=now)
            .exclude(retry_after__gt=now)
            .exclude(website__status__in=[WebsiteStatus.DELETING, WebsiteStatus.DELETED])  # nothing to validate
            .select_related("tenant")
            .values_list("pk", "tenant_id")
        )
        # Automatic issuances that failed and whose next attempt has come (none once they ran out).
        again = list(
            Certificate.all_tenants.filter(status=S.FAILED, source=CertificateSource.ACME, automatic=True,
                                           retry_after__lte=now, failures__lt=issue_retries())
            .exclude(website__status__in=[WebsiteStatus.DELETING, WebsiteStatus.DELETED])
            .exclude(challenge=Challenge.HTTP_01, website__isnull=True)  # no site left to validate through
            .values_list("pk", "tenant_id")
        )  # fmt: skip
        gone = list(
            Certificate.all_tenants.filter(status__in=[S.VALID, S.RENEWING], not_after__lte=now).values_list(
                "pk", "tenant_id"
            )
        )
        soon = list(
            Certificate.all_tenants.filter(
                status__in=[S.VALID, S.RENEWING], not_after__gt=now,
                not_after__lte=now + timedelta(days=settings.MPANEL_SSL_ALERT_DAYS), alerted_at__isnull=True,
            ).values_list("pk", "tenant_id")
        )  # fmt: skip
        tenants = {t.pk: t for t in _tenants({t for _, t in due + again + gone + soon})}
    for pk, tenant_id in due:
        with tenant_scope(tenants[tenant_id]):
            try:
                certificate_renew(certificate=Certificate.objects.get(pk=pk), automatic=True)
                renewed += 1
            except Conflict:
                pass  # changed since the look (renewed by hand, revoked)
    for pk, tenant_id in again:
        with tenant_scope(tenants[tenant_id]):
            try:
                certificate_renew(certificate=Certificate.objects.get(pk=pk), automatic=True)
                retried += 1
            except Conflict:
                pass  # changed since the look (retried by hand, deleted)
    for pk, tenant_id in gone:
        with tenant_scope(tenants[tenant_id]):
            expired += _expire(pk)
    for pk, tenant_id in soon:
        with tenant_scope(tenants[tenant_id]):
            alerted += _alert(pk, now)
    return {"renewing": renewed, "retrying": retried, "expired": expired, "alerted": alerted}


def _tenants(ids):
    return Tenant.objects.filter(pk__in=ids)


@transaction.atomic
def _expire(pk) -> int:
    cert = certs.locked(pk)
    if cert.status not in (S.VALID, S.RENEWING) or cert.not_after > timezone.now():
        return 0
    certs.transition(cert, S.EXPIRED, "ssl.certificate.expired", actor=audit.SYSTEM)
    if cert.website_id:
        certs.enqueue(cert, INSTALL_JOB)  # the site stops serving it
    _notify(cert, f"The certificate for {cert} has expired",
            "It could not be renewed in time. Renew it or upload a new one; until then the website serves a "
            "self-signed certificate.")  # fmt: skip
    return 1


@transaction.atomic
def _alert(pk, now) -> int:
    cert = certs.locked(pk)
    if cert.alerted_at is not None:
        return 0
    cert.alerted_at = now
    cert.save(update_fields=["alerted_at", "updated_at"])
    days = max((cert.not_after - now).days, 0)
    reason = f" The last attempt failed: {cert.last_error}" if cert.last_error else ""
    after = {"not_after": cert.not_after.isoformat(), "days": days, "error": cert.last_error[:500]}
    audit.record(action="ssl.certificate.expiring", obj=cert, actor=None, tenant=cert.tenant, after=after)
    record_event(EventType.SSL_EXPIRING, tenant=cert.tenant_id, reason=f"{days} days left", actor=None,
                 data={"certificate": str(cert.pk), "names": cert.names[:10], **after})  # fmt: skip
    _notify(cert, f"The certificate for {cert} expires in {days} days",
            f"It expires on {cert.not_after:%Y-%m-%d %H:%M} UTC and has not been renewed yet.{reason}")  # fmt: skip
    return 1


def _notify(cert: Certificate, subject: str, body: str) -> None:
    emails = list(
        Membership.objects.filter(tenant_id=cert.tenant_id, role__in=[Role.OWNER, Role.ADMIN])
        .values_list("user__email", flat=True)
    )  # fmt: skip
    emails = sorted({e for e in emails if e})
    if emails:
        transaction.on_commit(lambda: send_mail(subject=f"[mPanel] {subject}", message=body, from_email=None,
                                                recipient_list=emails, fail_silently=True))  # fmt: skip
