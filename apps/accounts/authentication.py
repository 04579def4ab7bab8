"""Bearer-token authentication (docs/api.md).

``Authorization: Bearer <key>``: the key is looked up by its SHA-256 hash, so a leaked
database does not leak usable tokens. Revoked or expired tokens are refused at once.
Other token kinds (personal API tokens ``mp_…``) register a resolver by prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from apps.common import context

from .models import AuthToken, hash_token

# prefix -> callable(raw_key, request) -> (user, token) ; lets the security center add `mp_` tokens.
TOKEN_RESOLVERS: dict[str, Callable] = {}
# callable(token, request) run for every live session before it is accepted; raises to refuse it
# (the security center's session idle timeout and absolute lifetime).
SESSION_CHECKS: list[Callable] = []
LAST_USED_GRANULARITY = timedelta(minutes=1)


def register_token_resolver(prefix: str, resolver: Callable) -> None:
    TOKEN_RESOLVERS[prefix] = resolver


def register_session_check(check: Callable) -> None:
    if check not in SESSION_CHECKS:
        SESSION_CHECKS.append(check)


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
        token = AuthToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
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

    def authenticate_header(self, request):
        return self.keyword
