"""The ACME CA, through the ``acme`` library (Certbot's): the account, orders, challenges,
finalisation and download. Nothing here touches the database; ``services`` stores each step.

The directory is ``MPANEL_ACME_DIRECTORY`` (Let's Encrypt production by default; staging or pebble
for tests); ``MPANEL_ACME_CA_BUNDLE`` trusts a CA's own HTTPS listener that the system does not
(pebble's). External Account Binding (ZeroSSL, …): ``MPANEL_ACME_EAB_KID`` and
``MPANEL_ACME_EAB_HMAC_KEY``, used when the directory says it requires one.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

import josepy as jose
from acme import challenges, client, errors, messages
from acme import crypto_util as acme_crypto
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings

from apps.jobs.errors import register_safe_error

POLL_SECONDS = 0.5
USER_AGENT = "mPanel"


@register_safe_error  # the CA's own words (its problem document): tenants read them
class CaError(Exception):
    """The CA refused or failed. ``permanent``: this order cannot succeed (an invalid challenge, a
    name the CA refuses); otherwise trying again later may (the CA is unreachable, rate limits)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def new_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def make_csr(key_pem: str, names: list[str]) -> str:
    return acme_crypto.make_csr(key_pem.encode(), names).decode()


@dataclass
class Client:
    acme: client.ClientV2

    @property
    def key(self) -> jose.JWK:
        return self.acme.net.key


def directory_url() -> str:
    return settings.MPANEL_ACME_DIRECTORY


def connect(account_key_pem: str, account_uri: str = "") -> Client:
    key = jose.JWKEC(key=serialization.load_pem_private_key(account_key_pem.encode(), password=None))
    account = messages.RegistrationResource(uri=account_uri, body=messages.Registration()) if account_uri else None
    verify = getattr(settings, "MPANEL_ACME_CA_BUNDLE", "") or True
    net = client.ClientNetwork(key, account=account, alg=jose.ES256, verify_ssl=verify, user_agent=USER_AGENT,
                               timeout=getattr(settings, "MPANEL_ACME_TIMEOUT", 30))  # fmt: skip
    try:
        directory = client.ClientV2.get_directory(directory_url(), net)
    except Exception as exc:  # requests' connection errors, a directory that is not JSON
        raise CaError(f"The CA at {directory_url()} cannot be reached: {_short(exc)}") from exc
    return Client(client.ClientV2(directory, net))


def register(ca: Client, email: str) -> str:
    """Registers the account (or finds it: same key, same account); answers its URL."""
    eab = None
    if ca.acme.external_account_required():
        kid, hmac_key = getattr(settings, "MPANEL_ACME_EAB_KID", ""), getattr(settings, "MPANEL_ACME_EAB_HMAC_KEY", "")
        if not kid or not hmac_key:
            raise CaError("This CA requires External Account Binding: set MPANEL_ACME_EAB_KID and "
                          "MPANEL_ACME_EAB_HMAC_KEY.", permanent=True)  # fmt: skip
        eab = messages.ExternalAccountBinding.from_data(account_public_key=ca.key.public_key(), kid=kid,
                                                        hmac_key=hmac_key, directory=ca.acme.directory)  # fmt: skip
    registration = messages.NewRegistration.from_data(
        email=email or None, terms_of_service_agreed=True, external_account_binding=eab
    )
    try:
        regr = ca.acme.new_account(registration)
    except errors.ConflictError as exc:  # this key has an account already
        return exc.location
    except messages.Error as exc:
        raise CaError(
            f"The CA refused the account: {exc.detail or exc}", permanent=exc.code != "serverInternal"
        ) from exc
    except Exception as exc:
        raise CaError(f"The CA cannot be reached: {_short(exc)}") from exc
    ca.acme.net.account = regr
    return regr.uri


def _call(what: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except messages.Error as exc:
        permanent = exc.code not in ("serverInternal", "rateLimited", "badNonce")
        raise CaError(f"The CA refused to {what}: {exc.detail or exc}", permanent=permanent) from exc
    except errors.Error as exc:
        raise CaError(f"The CA could not {what}: {_short(exc)}") from exc
    except Exception as exc:  # connection refused, timeouts, TLS
        raise CaError(f"The CA cannot be reached to {what}: {_short(exc)}") from exc


def new_order(ca: Client, csr_pem: str) -> messages.OrderResource:
    return _call("open an order", ca.acme.new_order, csr_pem.encode())


def fetch_order(ca: Client, url: str, csr_pem: str) -> messages.OrderResource:
    """The order at ``url`` as it is now (after a restart: the same order, not a new one)."""

    def fetch():
        body = messages.Order.from_json(ca.acme._post_as_get(url).json())
        authzrs = [ca.acme._authzr_from_response(ca.acme._post_as_get(u), uri=u) for u in body.authorizations]
        return messages.OrderResource(body=body, uri=url, authorizations=authzrs, csr_pem=csr_pem.encode())

    return _call("read the order", fetch)


def status(resource) -> str:
    """An order's, authorisation's or challenge's status as its plain name ("pending", "valid", …)."""
    body = getattr(resource, "body", resource)
    value = getattr(body, "status", None)
    return getattr(value, "name", None) or str(value or "")


def pick(authzr: messages.AuthorizationResource, kind: str) -> messages.ChallengeBody:
    wanted = challenges.HTTP01 if kind == "http-01" else challenges.DNS01
    for challb in authzr.body.challenges:
        if isinstance(challb.chall, wanted):
            return challb
    raise CaError(f"The CA offers no {kind} challenge for {authzr.body.identifier.value}.", permanent=True)


def http01(ca: Client, challb: messages.ChallengeBody) -> tuple[str, str]:
    """(token, key authorisation): the file's name and content."""
    return challb.chall.encode("token"), challb.chall.key_authorization(ca.key)


def dns01(ca: Client, challb: messages.ChallengeBody, name: str) -> tuple[str, str]:
    """(record name, TXT value) for ``name`` (a wildcard's base name)."""
    return challb.chall.validation_domain_name(name.removeprefix("*.")), challb.chall.validation(ca.key)


def answer(ca: Client, challb: messages.ChallengeBody) -> None:
    _call("accept the challenge answer", ca.acme.answer_challenge, challb, challb.chall.response(ca.key))


def wait_valid(ca: Client, authzr: messages.AuthorizationResource, timeout: float) -> messages.AuthorizationResource:
    deadline = time.monotonic() + timeout
    while True:
        authzr, _ = _call("report the validation", ca.acme.poll, authzr)
        status = authzr.body.status
        if status == messages.STATUS_VALID:
            return authzr
        if status == messages.STATUS_INVALID:
            problems = [str(c.error.detail or c.error) for c in authzr.body.challenges if c.error]
            name = authzr.body.identifier.value
            raise CaError(f"Validation of {name} failed: {'; '.join(problems) or 'invalid'}", permanent=True)
        if time.monotonic() > deadline:
            raise CaError(f"The CA did not validate {authzr.body.identifier.value} in time.")
        time.sleep(POLL_SECONDS)


def finalize(ca: Client, orderr: messages.OrderResource, timeout: float) -> str:
    """Finalises a ready order (or waits for one finalised before a restart); answers the full chain."""
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
    if orderr.body.status == messages.STATUS_READY:
        orderr = _call("finalise the order", ca.acme.begin_finalization, orderr)
    elif orderr.body.status == messages.STATUS_INVALID:
        raise CaError(f"The order is invalid: {orderr.body.error or 'no reason given'}", permanent=True)
    orderr = _call("issue the certificate", ca.acme.poll_finalization, orderr, deadline)
    return orderr.fullchain_pem


def revoke(ca: Client, certificate_pem: str, reason: int = 0) -> None:
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    try:
        ca.acme.revoke(cert, reason)
    except messages.Error as exc:
        if exc.code == "alreadyRevoked":
            return
        raise CaError(f"The CA refused to revoke: {exc.detail or exc}", permanent=True) from exc
    except Exception as exc:
        raise CaError(f"The CA cannot be reached to revoke: {_short(exc)}") from exc


def _aware(value: datetime.datetime) -> datetime.datetime:
    # The acme library answers some times naive (its own "now", local time): make them UTC-aware.
    return value.astimezone(datetime.UTC)


def renewal_window(ca: Client, certificate_pem: str) -> tuple[datetime.datetime | None, datetime.datetime]:
    """ACME Renewal Information (RFC 9773): a time inside the window the CA suggests for renewing
    this certificate, and when to ask again. (None, when to ask again): the directory offers no
    ``renewalInfo`` (or the CA did not answer), and the panel's own rule applies."""
    try:
        at, ask_again = ca.acme.renewal_time(certificate_pem.encode())
    except errors.ARIError as exc:  # the CA's renewalInfo failed: its retry time, our rule meanwhile
        return None, _aware(exc.retry_after)
    except Exception:  # a malformed answer: the same
        return None, datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=6)
    return (_aware(at) if at is not None else None), _aware(ask_again)


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:300]
