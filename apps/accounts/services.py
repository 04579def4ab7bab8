"""Writes of sign-in: a login's answer (a new bearer session, or a challenge first), logout, the
operators' revocation of sessions, and registration. Each is audited."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
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


@transaction.atomic
def sessions_revoke(sessions: QuerySet[AuthToken], *, actor: User) -> int:
    """An operator revokes sessions (the admin): the live ones among ``sessions``; how many."""
    done = 0
    for token in sessions.filter(revoked_at__isnull=True).select_for_update():
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(
            action="auth.session_revoke",
            obj=token,
            tenant=None,
            actor=actor,
            changes={"revoked_at": [None, token.revoked_at]},
        )
        done += 1
    return done


def registered(user: User) -> None:
    """A new account (dj-rest-auth's registration created it)."""
    audit.record(action="auth.register", obj=user, tenant=None, actor=user)
