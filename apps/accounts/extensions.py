"""The extension points of sign-in (``apps.common.registry``): other apps add to them with a
decorator when their modules load, so accounts never imports them.

    @TOKEN_RESOLVERS.register("mp_")     # a bearer key with this prefix is that kind of token
    def resolve(raw, request): ...       # -> (user, token), or raises AuthenticationFailed

    @SESSION_CHECKS.register()           # run for every live session before it is accepted
    def check(token, request): ...       # raises to refuse it

    @LOGIN_CHALLENGES.register()         # run after the password checked out, in order
    def challenge(user, request): ...    # -> a dict answered instead of a key, or None
"""

from __future__ import annotations

from collections.abc import Callable

from apps.common.registry import Registry

# prefix -> resolver(raw_key, request) -> (user, token): e.g. the security center's `mp_` API tokens.
# A session key never starts with a registered prefix (AuthToken.issue draws again).
TOKEN_RESOLVERS: Registry[Callable] = Registry("token resolver")
# check(token, request), before last_used_at moves (so idle time is measured); raises to refuse.
SESSION_CHECKS: Registry[Callable] = Registry("session check")
# challenge(user, request) -> dict | None: the security center's `{"mfa_required": true, "mfa_token": …}`.
LOGIN_CHALLENGES: Registry[Callable] = Registry("login challenge")
