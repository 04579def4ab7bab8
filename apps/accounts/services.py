"""Writes of sign-in: a login's answer (a new bearer session, or a challenge first), logout and
registration. Each is audited."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.audit import services as audit
from apps.common import context

from .extensions import LOGIN_CHALLENGES
from .models import AuthToken, User
from .signals import session_started


def login_answer(user: User, request: Any) -> dict:
    """What a login whose password checked out answers: the first challenge's body (e.g. the second
    factor still to come), else ``{"key": …}`` of a new session."""
    for challenge in LOGIN_CHALLENGES:
        body = challenge(user, request)
        if body is not None:
            return body
    return {"key": issue_session(user)}


def issue_session(user: User, *, method: str = "password") -> str:
    """A new bearer session of ``user`` (``method``: how the login proved who it was); its secret,
    answered this once."""
    ctx = context.current()
    token, raw = AuthToken.issue(
        user=user, ttl=settings.MPANEL_TOKEN_TTL, ip=ctx.ip, user_agent=ctx.user_agent, method=method
    )
    type(user).objects.filter(pk=user.pk).update(last_login=timezone.now())
    ctx.actor = user
    audit.record(action="auth.login", obj=token, tenant=None, actor=user)
    session_started.send(sender=AuthToken, user=user, token=token, method=method)
    return raw


def logout(*, user: User, token: Any) -> None:
    """Revokes the session ``token`` (refused from then on); nothing for another kind of token."""
    if isinstance(token, AuthToken) and token.revoked_at is None:
        AuthToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
        audit.record(action="auth.logout", obj=token, tenant=None, actor=user)


def registered(user: User) -> None:
    """A new account (dj-rest-auth's registration created it)."""
    audit.record(action="auth.register", obj=user, tenant=None, actor=user)
