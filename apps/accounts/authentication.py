"""Bearer-token authentication (docs/api.md).

``Authorization: Bearer <key>``: the key is looked up by its SHA-256 hash, so a leaked
database does not leak usable tokens. Revoked or expired tokens are refused at once.
Other token kinds (personal API tokens ``mp_…``) register a resolver by prefix, and session checks
refuse sessions (``apps.accounts.extensions``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db.models import F, QuerySet
from django.utils import timezone
from rest_framework import authentication, exceptions

from apps.common import context
from apps.common.prepared import PreparedQuery
from apps.tenancy import resolution
from apps.tenancy.models import Membership

from .extensions import SESSION_CHECKS, TOKEN_RESOLVERS
from .models import AuthToken, hash_token

LAST_USED_GRANULARITY = timedelta(minutes=1)


_TOKEN_COLUMNS = [f.attname for f in AuthToken._meta.concrete_fields]


def _credentials_query(tenant_id: uuid.UUID, key_hash: str) -> QuerySet:
    return _memberships_with_token(key_hash).filter(tenant_id=tenant_id)[:1]


def _memberships_with_token(key_hash: str) -> QuerySet:
    return (
        Membership.objects.select_related("tenant", "user")
        .filter(user__auth_tokens__key_hash=key_hash)
        .annotate(**{f"mptoken_{n}": F(f"user__auth_tokens__{n}") for n in _TOKEN_COLUMNS})
        .annotate(**resolution.tenant_row_annotations("tenant_id"))
        .order_by()
    )


def _any_tenant_query(key_hash: str) -> QuerySet:
    # Two at most: one is the tenant of a caller who names none; two say that a header is needed.
    return _memberships_with_token(key_hash).order_by("pk")[:2]


# Compiled once per process (apps.common.prepared): its shape only changes with the registered TENANT_ROWS.
_CREDENTIALS = PreparedQuery(
    Membership, _credentials_query, key=lambda: tuple(resolution.TENANT_ROWS.items()), tenant_id=uuid.UUID, key_hash=str
)
# The same for a caller who names no tenant (no X-Tenant-ID): the memberships ``resolve`` reads then.
_CREDENTIALS_ANY_TENANT = PreparedQuery(
    Membership, _any_tenant_query, key=lambda: tuple(resolution.TENANT_ROWS.items()), key_hash=str
)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header.")
        try:
            raw = header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid Authorization header.") from exc
        for prefix, resolver in TOKEN_RESOLVERS.items():
            if raw.startswith(prefix):
                return resolver(raw, request)
        return self.authenticate_session_token(raw, request)

    def authenticate_session_token(self, raw: str, request):
        key_hash = hash_token(raw)
        token = self.token_with_membership(key_hash, request)
        if token is None:
            token = AuthToken.objects.select_related("user").filter(key_hash=key_hash).first()
        if token is None or not token.is_live or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or expired token.")
        for check in SESSION_CHECKS:
            check(token, request)  # before last_used_at moves, so idle time is measured
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_GRANULARITY:
            # Written at most once a minute, so that reads do not turn into writes.
            AuthToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        ctx = context.current()
        ctx.actor = token.user
        ctx.token_id = token.pk
        return token.user, token

    @staticmethod
    def token_with_membership(key_hash: str, request) -> AuthToken | None:
        """The token, its user, the caller's membership in the tenant ``X-Tenant-ID`` names, that tenant and
        its ``TENANT_ROWS`` in one query (the tenant resolution then reads nothing again). Naming no tenant,
        the caller's memberships (two at most, what ``resolve`` reads then) in the same one query. ``None``
        when the token's owner is no member of the tenant named, or of any: the plain token query decides."""
        if request.headers.get(resolution.HEADER):
            tenant_id = resolution.header_tenant_id(request)
            if tenant_id is None:  # malformed: resolve answers it
                return None
            rows = _CREDENTIALS.rows(tenant_id=tenant_id, key_hash=key_hash)
        else:
            rows = _CREDENTIALS_ANY_TENANT.rows(key_hash=key_hash)
            if rows:
                resolution.preload_memberships(request, rows)
        if not rows:
            return None
        names = _TOKEN_COLUMNS
        membership = rows[0]
        token = AuthToken.from_db(AuthToken.objects.db, names, [getattr(membership, f"mptoken_{n}") for n in names])
        token.user = membership.user
        if len(rows) == 1:
            resolution.preload(request, membership)
        return token

    def authenticate_header(self, request):
        return self.keyword
