"""What a personal API token (`mp_…`) reaches, generated over the whole URLconf.

Every route under /api/v1/ is walked and classified by this file's own table (the spec, written
independently of the code's rule in ``apps.security.authentication.token_may_reach``):

- identity and account management (members, invitations, tokens, the security policy, the account's
  own security, logins and passwords, the tenants list) and where customers' money goes (the tenant's
  connected Stripe account, its webhook signing secrets): an OWNER's token gets 403 on every method,
  with a body that would plant an owner, invite an address, mint a token or loosen the policy, and
  not one row of who-can-get-in changes;
- every other tenant API: the token answers exactly what its owner's signed-in session answers
  (reads; the role matrix of each module is tested by its own ApiTestCase);
- views that authenticate nobody (login, webhooks, the public catalog, health): the token adds
  nothing, they answer it as they answer an anonymous client.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.views.generic import TemplateView
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from apps.accounts.models import AuthToken
from apps.customers.models import Customer
from apps.security.authentication import IDENTITY_MODELS, token_may_reach
from apps.security.models import ApiToken, SecurityPolicy
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Invitation, Membership
from apps.tenancy.roles import Role
from apps.tenancy.scoping import all_tenants
from apps.tenancy.viewsets import TenantModelViewSet, TenantScopedViewSet
from tests.conftest import client_for
from tests.security.test_security_tokens import bearer, token_for

# The spec: routes a token must never reach (paths relative to /api/v1/).
IDENTITY_ROUTES = re.compile(
    r"^(auth/|tenants(/|$)|users(/|$)|security/(me|tokens|policy)(/|$)"
    # Where customers' money goes: the tenant's Stripe account and the secrets that sign its payments.
    r"|billing/stripe/connect|billing/settings/webhook-secrets)"
)
# What a leaked token would send: each field is what one of those routes needs to do harm.
HOSTILE_BODY = {
    "email": "planted@evil.test",
    "role": "OWNER",
    "name": "minted",
    "require_2fa": False,
    "ip_allowlist": [],
    "token": "x",
    "code": "123456",
    "password": "Another-pass-12",
    "new_password1": "Another-pass-12",
    "new_password2": "Another-pass-12",
    "old_password": "x",
}
WRITE_METHODS = ("post", "put", "patch", "delete")


def _sample(regex: str, values: dict[str, str]) -> str:
    """A concrete path for a route's regex: named groups filled from ``values`` (else a UUID)."""

    def group(match: re.Match) -> str:
        return values.get(match.group(1), str(uuid.uuid4()))

    path = re.sub(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)", group, regex)
    path = path.replace("\\Z", "").replace("^", "").replace("$", "").replace("/?", "/").replace("\\", "")
    return "/" + path


def _walk(resolver, prefix: str = ""):
    for entry in resolver.url_patterns:
        regex = prefix + str(entry.pattern.regex.pattern).lstrip("^") if prefix else str(entry.pattern.regex.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry, regex.rstrip("$"))
        elif isinstance(entry, URLPattern):
            yield regex, entry.callback


def _methods(callback) -> list[str]:
    actions = getattr(callback, "actions", None)
    if actions:
        return sorted(actions)
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    return sorted(m for m in ("get", "post", "put", "patch", "delete") if hasattr(cls, m))


def api_routes():
    """(relative regex, callback) of every API route, one per distinct view and regex."""
    seen, routes = set(), []
    for regex, callback in _walk(get_resolver()):
        relative = regex.lstrip("^")
        if not relative.startswith("api/v1/"):
            continue
        relative = relative[len("api/v1/") :]
        key = (relative, callback)
        if key not in seen:
            seen.add(key)
            routes.append((relative, callback))
    return routes


def _id(route) -> str:
    return route[0] or "<root>"


ROUTES = api_routes()


def _view_class(callback):
    return getattr(callback, "cls", None) or getattr(callback, "view_class", None)


def _authenticates(cls) -> bool:
    """Whether the view reads credentials at all (DRF views with authentication classes)."""
    return bool(getattr(cls, "authentication_classes", None))


def _reads_no_credentials(cls) -> bool:
    """A DRF view with no authentication classes, or a plain page (the links in our emails)."""
    return (cls is not None and list(getattr(cls, "authentication_classes", [None])) == []) or (
        isinstance(cls, type) and issubclass(cls, TemplateView)
    )


def _who_can_get_in() -> dict:
    with all_tenants():
        return {
            "members": sorted(Membership.objects.values_list("pk", "role")),
            "invitations": sorted(Invitation.objects.values_list("pk", "revoked_at", "accepted_at")),
            "tokens": sorted(ApiToken.all_tenants.values_list("pk", "revoked_at")),
            "policies": sorted(SecurityPolicy.objects.values_list("pk", "require_2fa", "ip_allowlist")),
            "sessions": sorted(AuthToken.objects.values_list("pk", "revoked_at")),
            "devices": sorted(TOTPDevice.objects.values_list("pk", "confirmed")),
            "users": sorted(get_user_model().objects.values_list("pk", "password", "is_active", "is_staff")),
        }


@pytest.fixture
def world(tenant_a):
    """An OWNER's token in tenant A, with one of everything a route might address."""
    owner = tenant_a.owner
    token, raw = token_for(owner, tenant_a, role=Role.OWNER)
    with tenant_a.scope():
        tenancy_services.member_add(
            tenant=tenant_a.tenant, actor=owner, actor_role=Role.OWNER, email="invited@x.test", role=Role.ADMIN
        )
        Customer.objects.create(name="C", email="c@example.com", currency="USD")
    return tenant_a, token, raw


def _path_for(relative: str, callback, fx) -> str:
    """Detail routes address a real object of the token's tenant when the view's model has one."""
    values = {"tenant_pk": str(fx.tenant.pk)}
    cls = _view_class(callback)
    model = getattr(getattr(cls, "queryset", None), "model", None)
    if model is not None and "pk" in relative:
        with all_tenants():
            first = model._default_manager.filter(tenant=fx.tenant).first() if hasattr(model, "tenant") else None
        if first is not None:
            values["pk"] = str(first.pk)
    path = "/api/v1/" + _sample(relative, values).lstrip("/")
    match = resolve(path.split("?")[0])
    assert match.func is callback, (relative, path, match.func)
    return path


def test_the_walk_sees_every_route_of_the_router_and_of_auth():
    relatives = {r for r, _ in ROUTES}
    for expected in (
        r"tenants/(?P<tenant_pk>[0-9a-fA-F-]{36})/members/(?P<pk>[0-9a-fA-F-]{36})/?$",
        r"security/tokens/?$",
        r"security/policy/?$",
        r"login/?$",
        r"customers/?$",
    ):
        assert any(r.endswith(expected) for r in relatives), expected
    assert len(ROUTES) > 100


@pytest.mark.parametrize("route", [r for r in ROUTES if IDENTITY_ROUTES.match(r[0])], ids=_id)
def test_identity_routes_refuse_a_token_on_every_method(route, world):
    relative, callback = route
    fx, _token, raw = world
    cls = _view_class(callback)
    if not _authenticates(cls):
        # Login, its 2FA step, the pages our emails link to: they read no credentials, so a token
        # confers nothing there.
        assert _reads_no_credentials(cls), relative
        return
    assert token_may_reach(cls) is False, f"{cls.__name__} is open to API tokens"
    path = _path_for(relative, callback, fx)
    before = _who_can_get_in()
    client = bearer(raw)
    for method in _methods(callback):
        body = HOSTILE_BODY if method in WRITE_METHODS else None
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code == 403, (method, path, response.status_code, response.content[:300])
    assert _who_can_get_in() == before, relative


@pytest.mark.parametrize("route", [r for r in ROUTES if not IDENTITY_ROUTES.match(r[0])], ids=_id)
def test_every_other_route_answers_a_token_as_it_answers_its_owner(route, world):
    relative, callback = route
    fx, _token, raw = world
    cls = _view_class(callback)
    path = _path_for(relative, callback, fx)
    reads = [m for m in _methods(callback) if m == "get"]
    if not _authenticates(cls):
        for method in reads:
            anonymous = getattr(APIClient(), method)(path)
            assert getattr(bearer(raw), method)(path).status_code == anonymous.status_code, path
        return
    if not (isinstance(cls, type) and issubclass(cls, TenantScopedViewSet)):
        # The schema and its docs: signed-in people only, never a token (as before).
        assert token_may_reach(cls) is False
        assert bearer(raw).get(path).status_code == 403, path
        return
    assert token_may_reach(cls) is True, f"{cls.__name__} is closed to API tokens but is not identity management"
    session = client_for(fx.owner, fx.tenant)
    for method in reads:
        expected = getattr(session, method)(path).status_code
        got = getattr(bearer(raw), method)(path)
        assert got.status_code == expected, (path, got.status_code, expected, got.content[:300])
        assert got.status_code != 403, path


def test_the_rule_is_fail_closed_for_new_routes():
    """A new tenant API over an identity model is closed to tokens without declaring anything; a
    declared one is closed whatever its model; a view with nothing to judge by is closed."""

    class NewMembersApi(TenantModelViewSet):
        queryset = Membership.objects.all()

    class NewTokensApi(TenantModelViewSet):
        queryset = ApiToken.objects.all()

    class DeclaredApi(TenantModelViewSet):
        queryset = Customer.objects.all()
        identity_management = True

    class NoModelApi(TenantScopedViewSet):
        pass

    class CustomersApi(TenantModelViewSet):
        queryset = Customer.objects.all()

    assert not token_may_reach(NewMembersApi)
    assert not token_may_reach(NewTokensApi)
    assert not token_may_reach(DeclaredApi)
    assert not token_may_reach(NoModelApi)
    assert not token_may_reach(None)
    assert token_may_reach(CustomersApi)
    assert {"tenancy.membership", "tenancy.invitation", "security.apitoken", "security.securitypolicy"} <= (
        IDENTITY_MODELS
    )


def test_a_leaked_owner_token_cannot_plant_an_owner(world):
    """The finding itself, end to end: list, add as OWNER, change, remove, invite: all 403, nothing written."""
    fx, _token, raw = world
    client = bearer(raw)
    url = f"/api/v1/tenants/{fx.tenant.pk}/members/"
    admin = Membership.objects.get(tenant=fx.tenant, user=fx.users[Role.ADMIN])
    before = _who_can_get_in()
    assert client.get(url).status_code == 403
    assert client.post(url, {"email": fx.users[Role.VIEWER].email, "role": "OWNER"}, format="json").status_code == 403
    assert client.post(url, {"email": "new@evil.test", "role": "OWNER"}, format="json").status_code == 403
    assert client.patch(f"{url}{admin.pk}/", {"role": "OWNER"}, format="json").status_code == 403
    assert client.delete(f"{url}{admin.pk}/").status_code == 403
    assert client.get(f"/api/v1/tenants/{fx.tenant.pk}/invitations/").status_code == 403
    assert client.put("/api/v1/security/policy", {"require_2fa": False}, format="json").status_code == 403
    assert _who_can_get_in() == before
    # The same owner, signed in, still manages members.
    session = client_for(fx.owner, fx.tenant)
    assert session.get(url).status_code == 200
    # And the token still works where it belongs.
    assert client.get("/api/v1/customers/").status_code == 200
