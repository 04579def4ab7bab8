"""Members by consent: adding a member invites them, whether or not they have an account,
and the answer never tells which; the invited user accepts or declines at /api/v1/invitations/. A
member's removal revokes their API tokens in that tenant. A tenant's policy and its security events
concern only what happens in that tenant."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import AuthToken
from apps.audit.models import AuditEvent
from apps.security.models import ApiToken, SecurityEvent, SecurityPolicy, SessionTenantUse
from apps.tenancy import services as tenancy_services
from apps.tenancy.api import MyInvitationViewSet
from apps.tenancy.models import Invitation, Membership
from apps.tenancy.roles import ORDERED, Role
from tests.conftest import PASSWORD, admin_login, client_for, make_user
from tests.security.test_security_tokens import bearer, token_for
from tests.security_helpers import LOGIN

INBOX = "/api/v1/invitations/"


def members_url(fx):
    return reverse("tenant-member-list", kwargs={"tenant_pk": fx.tenant.pk})


def invite(fx, email, role="MEMBER", by=Role.ADMIN):
    response = client_for(fx.users[by]).post(members_url(fx), {"email": email, "role": role}, format="json")
    assert response.status_code == 201, response.content
    return Invitation.objects.get(pk=response.json()["id"])


def join(fx, user, role="MEMBER") -> Membership:
    """``user`` joins ``fx.tenant`` the only way there is: invited, then accepting."""
    invitation = invite(fx, user.email, role)
    response = client_for(user).post(f"{INBOX}{invitation.pk}/accept/")
    assert response.status_code == 201, response.content
    return Membership.objects.get(tenant=fx.tenant, user=user)


def set_policy(fx, **fields) -> SecurityPolicy:
    with fx.scope():
        policy, _ = SecurityPolicy.objects.update_or_create(tenant=fx.tenant, defaults=fields)
    return policy


# --- adding a member: an invitation, the same for every address --------------------------------------


def _masked_body(body: dict) -> dict:
    return {**body, "id": "<id>", "email": "<email>", "created_at": "<t>", "expires_at": "<t>"}


def _masked_mail(message, address: str) -> tuple:
    body = re.sub(r"token=[\w-]+|Invitation token: [\w-]+", "<token>", message.body)
    return (message.subject, body.replace(address, "<email>"), message.to == [address], message.from_email)


def _statements(queries) -> list[str]:
    # The statements' shapes: every literal (addresses, ids, times, hashes, savepoint names) masked.
    return [re.sub(r"'[^']*'|\"s\d+_x\d+\"|\b\d+\b", "?", q["sql"]) for q in queries]


ACCOUNT_KINDS = {
    "active account": {},
    "inactive account": {"is_active": False},
    "operator account": {"is_staff": True},
    "member of another tenant": "tenant_b",
}


@pytest.mark.django_db
class TestInvitingNeverTellsWhetherAnAccountExists:
    @pytest.mark.parametrize("kind", list(ACCOUNT_KINDS))
    @pytest.mark.parametrize("role", ["VIEWER", "ADMIN"])
    def test_existing_and_unknown_email_get_the_same_answer_email_and_work(
        self, kind, role, tenant_a, tenant_b, django_capture_on_commit_callbacks
    ):
        extra = ACCOUNT_KINDS[kind]
        known = tenant_b.users[Role.MEMBER] if extra == "tenant_b" else make_user("known@example.com", **extra)
        unknown = "nobody-here@example.com"
        client = client_for(tenant_a.owner, tenant_a.tenant)
        client.post(members_url(tenant_a), {"email": "warm-up@example.com"}, format="json")  # per-process caches
        answers = {}
        for address in (known.email, unknown):
            mail.outbox.clear()
            with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
                response = client.post(members_url(tenant_a), {"email": address, "role": role}, format="json")
            assert len(mail.outbox) == 1
            answers[address] = (
                response.status_code,
                _masked_body(response.json()),
                _masked_mail(mail.outbox[0], address),
                _statements(queries.captured_queries),
            )
        assert answers[known.email] == answers[unknown]
        status_code, body, _mail, _sql = answers[unknown]
        assert status_code == 201 and body["status"] == "invited" and body["role"] == role
        # Nobody was attached: the account holder is not a member until they accept.
        assert not Membership.objects.filter(tenant=tenant_a.tenant, user=known).exists()
        assert set(Invitation.objects.filter(tenant=tenant_a.tenant).values_list("email", flat=True)) == {
            "warm-up@example.com",
            known.email,
            unknown,
        }

    def test_conflicts_are_about_this_tenant_only(self, tenant_a, tenant_b):
        client = client_for(tenant_a.users[Role.ADMIN])
        taken = client.post(members_url(tenant_a), {"email": tenant_a.users[Role.VIEWER].email}, format="json")
        assert taken.status_code == 409 and taken.json()["code"] == "already_member"
        for address in (tenant_b.owner.email, "fresh@example.com"):
            assert client.post(members_url(tenant_a), {"email": address}, format="json").status_code == 201
            again = client.post(members_url(tenant_a), {"email": address.upper()}, format="json")
            assert again.status_code == 409 and again.json()["code"] == "already_invited"

    def test_only_admins_invite_and_only_owners_invite_owners(self, tenant_a):
        for role in ORDERED:
            client = client_for(tenant_a.users[role])
            for target in ("MEMBER", "OWNER"):
                response = client.post(
                    members_url(tenant_a), {"email": f"{role}-{target}@example.com", "role": target}, format="json"
                )
                allowed = role.includes(Role.ADMIN) and (target != "OWNER" or role == Role.OWNER)
                assert response.status_code == (201 if allowed else 403), (role, target, response.content)
        assert Invitation.objects.count() == 3  # ADMIN → MEMBER, OWNER → MEMBER and OWNER

    def test_header_less_use_survives_an_invitation(self, tenant_a, tenant_b):
        # Being invited changes nothing for the invitee: still in one tenant, still header-less.
        user = tenant_b.users[Role.MEMBER]
        invite(tenant_a, user.email)
        assert client_for(user).get("/api/v1/customers/").status_code == 200


# --- /api/v1/invitations/: the addressee answers -----------------------------------------------------


def _close(invitation: Invitation, state: str) -> None:
    now = timezone.now()
    fields = {
        "declined": {"declined_at": now},
        "revoked": {"revoked_at": now},
        "expired": {"expires_at": now - timedelta(seconds=1)},
        "accepted": {"accepted_at": now},
    }[state]
    Invitation.objects.filter(pk=invitation.pk).update(**fields)


def _state(invitation: Invitation) -> tuple:
    fresh = Invitation.objects.get(pk=invitation.pk)
    return (
        fresh.accepted_at,
        fresh.declined_at,
        fresh.revoked_at,
        Membership.objects.filter(tenant=fresh.tenant).count(),
    )


@pytest.mark.django_db
class TestMyInvitations:
    covers = [MyInvitationViewSet]

    @pytest.fixture
    def invitee(self, tenant_a):
        user = make_user("invitee@example.com")
        return user, invite(tenant_a, user.email, "BILLING")

    def routes(self):
        from mpanel.api import router

        for _prefix, viewset, basename in router.registry:
            if viewset is MyInvitationViewSet:
                for route in router.get_routes(viewset):
                    for method, action in route.mapping.items():
                        if hasattr(viewset, action):
                            yield method, action, route.name.format(basename=basename), route.detail

    def test_every_route_answers_only_the_addressee(self, tenant_a, tenant_b, invitee):
        _user, invitation = invitee
        others = [*tenant_a.users.values(), *tenant_b.users.values(), make_user("bystander@example.com")]
        walked = set()
        for method, action, name, detail in self.routes():
            walked.add(action)
            url = reverse(name, kwargs={"pk": invitation.pk} if detail else {})
            assert getattr(client_for(), method)(url, {}, format="json").status_code == 401, url
            before = _state(invitation)
            for other in others:
                response = getattr(client_for(other), method)(url, {}, format="json")
                if detail:
                    assert response.status_code == 404, (other.email, url, response.status_code)
                else:
                    assert response.status_code == 200 and response.json()["count"] == 0, other.email
            assert _state(invitation) == before, f"{url} changed by someone it was not addressed to"
            # A personal API token reaches tenant APIs only, never the account's invitations.
            _token, raw = token_for(tenant_a.owner, tenant_a)
            assert getattr(bearer(raw), method)(url, {}, format="json").status_code == 403, url
        assert walked == {"list", "accept", "decline"}

    def test_list_shows_my_pending_invitations_only(self, tenant_a, tenant_b, invitee):
        user, invitation = invitee
        states = {}
        for state in ("declined", "revoked", "expired", "accepted"):
            closed = invite(tenant_b, f"{state}-x@example.com")
            Invitation.objects.filter(pk=closed.pk).update(email=user.email)
            _close(closed, state)
            states[state] = closed
        invite(tenant_b, "someone-else@example.com")
        response = client_for(user).get(INBOX)
        assert response.status_code == 200
        rows = response.json()["results"]
        assert [r["id"] for r in rows] == [str(invitation.pk)]
        row = rows[0]
        assert row["tenant"] == str(tenant_a.tenant.pk) and row["tenant_name"] == tenant_a.tenant.name
        assert row["role"] == "BILLING" and row["status"] == "invited"
        assert row["invited_by"] == tenant_a.users[Role.ADMIN].email
        assert client_for(user).get(INBOX, {"role": "VIEWER"}).json()["count"] == 0
        assert client_for(user).get(INBOX, {"role": "KING"}).status_code == 400

    def test_accept_joins_with_the_invited_role_and_is_audited(self, tenant_a, invitee):
        user, invitation = invitee
        response = client_for(user).post(f"{INBOX}{invitation.pk}/accept/")
        assert response.status_code == 201, response.content
        assert response.json()["role"] == "BILLING" and response.json()["status"] == "active"
        assert Membership.objects.get(tenant=tenant_a.tenant, user=user).role == "BILLING"
        event = AuditEvent.objects.get(action="member.join")
        assert event.tenant_id == tenant_a.tenant.pk and event.actor_id == user.pk and event.ip
        assert SecurityEvent.objects.filter(type="member.added", tenant=tenant_a.tenant, user=user).exists()
        again = client_for(user).post(f"{INBOX}{invitation.pk}/accept/")
        assert again.status_code == 409 and again.json()["code"] == "invitation_closed"
        assert client_for(user).get(INBOX).json()["count"] == 0

    def test_decline_is_final_and_audited(self, tenant_a, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            invitation = invite(tenant_a, "later@example.com")
        token = re.search(r"token=([\w-]+)", mail.outbox[0].body).group(1)
        later = make_user("later@example.com")
        response = client_for(later).post(f"{INBOX}{invitation.pk}/decline/")
        assert response.status_code == 200 and response.json()["status"] == "declined"
        event = AuditEvent.objects.get(action="member.invite_decline")
        assert event.tenant_id == tenant_a.tenant.pk and event.actor_id == later.pk
        assert client_for(later).post(f"{INBOX}{invitation.pk}/accept/").status_code == 409
        by_token = client_for(later).post("/api/v1/tenants/accept-invitation/", {"token": token}, format="json")
        assert by_token.status_code == 409
        assert client_for(later).post(f"{INBOX}{invitation.pk}/decline/").status_code == 409
        assert not Membership.objects.filter(user=later).exists()
        # The tenant's admins see it declined, and may invite again.
        admin = client_for(tenant_a.users[Role.ADMIN])
        listed = admin.get(reverse("tenant-invitation-list", kwargs={"tenant_pk": tenant_a.tenant.pk})).json()
        assert {r["email"]: r["status"] for r in listed["results"]}["later@example.com"] == "declined"
        assert admin.post(members_url(tenant_a), {"email": "later@example.com"}, format="json").status_code == 201

    @pytest.mark.parametrize("state", ["declined", "revoked", "expired", "accepted"])
    @pytest.mark.parametrize("way", ["id", "token"])
    def test_a_closed_invitation_cannot_be_accepted(self, state, way, tenant_a, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            invitation = invite(tenant_a, "closed@example.com")
        token = re.search(r"token=([\w-]+)", mail.outbox[-1].body).group(1)
        user = make_user("closed@example.com")
        _close(invitation, state)
        client = client_for(user)
        if way == "id":
            response = client.post(f"{INBOX}{invitation.pk}/accept/")
        else:
            response = client.post("/api/v1/tenants/accept-invitation/", {"token": token}, format="json")
        assert response.status_code == 409, response.content
        assert not Membership.objects.filter(tenant=tenant_a.tenant, user=user).exists()

    def test_accepting_into_a_tenant_i_am_in_already_is_409(self, tenant_a, invitee):
        user, invitation = invitee
        Membership.objects.create(tenant=tenant_a.tenant, user=user, role=Role.VIEWER)  # e.g. by an operator
        response = client_for(user).post(f"{INBOX}{invitation.pk}/accept/")
        assert response.status_code == 409 and response.json()["code"] == "already_member"
        assert Invitation.objects.get(pk=invitation.pk).is_open
        assert Membership.objects.get(tenant=tenant_a.tenant, user=user).role == Role.VIEWER

    def test_bad_ids_are_404(self, invitee):
        user, _invitation = invitee
        client = client_for(user)
        assert client.post(f"{INBOX}00000000-0000-0000-0000-000000000000/accept/").status_code == 404
        assert client.post(f"{INBOX}not-a-uuid/accept/").status_code == 404

    def test_mandatory_verification_addresses_only_a_verified_email(self, settings, tenant_a, invitee):
        from allauth.account.models import EmailAddress

        user, invitation = invitee
        settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
        client = client_for(user)
        assert client.get(INBOX).json()["count"] == 0
        assert client.post(f"{INBOX}{invitation.pk}/accept/").status_code == 404
        EmailAddress.objects.create(user=user, email=user.email, verified=False, primary=True)
        assert client.post(f"{INBOX}{invitation.pk}/accept/").status_code == 404
        EmailAddress.objects.filter(user=user).update(verified=True)
        assert client.get(INBOX).json()["count"] == 1
        assert client.post(f"{INBOX}{invitation.pk}/accept/").status_code == 201

    def test_list_query_count_is_constant(self, tenant_a, tenant_b, django_assert_max_num_queries):
        user = make_user("popular@example.com")
        client = client_for(user)

        def invite_many(n):
            for fx in (tenant_a, tenant_b):
                for _ in range(n):
                    inv = invite(fx, f"x{Invitation.objects.count()}@example.com")
                    Invitation.objects.filter(pk=inv.pk).update(email=user.email)

        invite_many(2)
        client.get(INBOX)
        with CaptureQueriesContext(connection) as few:
            assert client.get(INBOX).json()["count"] == 4
        few = len(few)  # read now: every request of the test client empties the query log
        assert few >= 3
        invite_many(10)
        with django_assert_max_num_queries(few):
            assert client.get(INBOX).json()["count"] == 24


# --- removal revokes -------------------------------------------------------------------------------


def _remove_by_admin(fx, membership, operator):
    url = reverse("tenant-member-detail", kwargs={"tenant_pk": fx.tenant.pk, "pk": membership.pk})
    assert client_for(fx.owner, fx.tenant).delete(url).status_code == 204


def _leave(fx, membership, operator):
    url = reverse("tenant-member-detail", kwargs={"tenant_pk": fx.tenant.pk, "pk": membership.pk})
    assert client_for(membership.user, fx.tenant).delete(url).status_code == 204


def _operator_deletes(fx, membership, operator):
    client = admin_login(Client(), operator)
    response = client.post(f"/admin/tenancy/membership/{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content[:500]


def _operator_bulk_deletes(fx, membership, operator):
    client = admin_login(Client(), operator)
    response = client.post(
        "/admin/tenancy/membership/",
        {"action": "delete_selected", "_selected_action": [str(membership.pk)], "post": "yes"},
    )
    assert response.status_code == 302, response.content[:500]


def _operator_deletes_it_on_the_tenants_page(fx, membership, operator):
    client = admin_login(Client(), operator)
    url = f"/admin/tenancy/tenant/{fx.tenant.pk}/change/"
    page = client.get(url)
    data = {}
    for admin_form in [page.context["adminform"].form, *(f.formset for f in page.context["inline_admin_formsets"])]:
        forms = [admin_form] if not hasattr(admin_form, "forms") else [admin_form.management_form, *admin_form.forms]
        for one in forms:
            for name, field in one.fields.items():
                value = one.initial.get(name, field.initial)
                if value is not None:
                    data[one.add_prefix(name)] = getattr(value, "pk", value)
            if getattr(one, "instance", None) is not None and one.instance.pk == membership.pk:
                data[one.add_prefix("DELETE")] = "on"
    response = client.post(url, data)
    assert response.status_code == 302, response.context and response.context["errors"]


def _row_deleted(fx, membership, operator):
    # No service involved (e.g. a shell): the token is not marked revoked, but it is still dead.
    Membership.objects.filter(pk=membership.pk).delete()


REMOVALS = {
    "removed by an admin": _remove_by_admin,
    "leaves": _leave,
    "operator deletes it": _operator_deletes,
    "operator bulk-deletes it": _operator_bulk_deletes,
    "operator deletes it on the tenant's page": _operator_deletes_it_on_the_tenants_page,
    "row deleted": _row_deleted,
}


@pytest.mark.django_db
class TestRemovalRevokes:
    @pytest.mark.parametrize("how", list(REMOVALS))
    def test_re_adding_a_removed_member_revives_no_token(self, how, tenant_a, tenant_b):
        user = tenant_a.users[Role.BILLING]
        membership = Membership.objects.get(tenant=tenant_a.tenant, user=user)
        token, raw = token_for(user, tenant_a)
        _other_tenant_token, other_raw = token_for(tenant_b.owner, tenant_b)
        assert bearer(raw).get("/api/v1/customers/").status_code == 200
        operator = make_user("operator@example.com", is_staff=True, is_superuser=True)

        REMOVALS[how](tenant_a, membership, operator)
        assert not Membership.objects.filter(pk=membership.pk).exists()
        assert bearer(raw).get("/api/v1/customers/").status_code == 401

        join(tenant_a, user, "BILLING")
        assert bearer(raw).get("/api/v1/customers/").status_code == 401
        assert bearer(other_raw).get("/api/v1/customers/").status_code == 200  # nobody else's token moved
        # A token made after joining again works.
        _new, new_raw = token_for(user, tenant_a)
        assert bearer(new_raw).get("/api/v1/customers/").status_code == 200

        token = ApiToken.all_tenants.get(pk=token.pk)
        if how == "row deleted":
            assert token.revoked_at is None
            return
        assert token.revoked_at is not None
        audit = AuditEvent.objects.get(action="security.token_revoke", object_id=str(token.pk))
        assert audit.tenant_id == tenant_a.tenant.pk and "revoked_at" in audit.changes
        event = SecurityEvent.objects.get(type="token.revoked", tenant=tenant_a.tenant, user=user)
        assert event.reason == "member_removed" and event.data["token"] == str(token.pk)

    def test_removal_leaves_the_members_tokens_elsewhere_alone(self, tenant_a, tenant_b):
        user = tenant_a.users[Role.ADMIN]
        join(tenant_b, user, "ADMIN")
        _in_a, raw_a = token_for(user, tenant_a)
        _in_b, raw_b = token_for(user, tenant_b)
        membership = Membership.objects.get(tenant=tenant_b.tenant, user=user)
        tenancy_services.member_remove(membership=membership, actor=tenant_b.owner, actor_role=Role.OWNER)
        assert bearer(raw_b).get("/api/v1/customers/").status_code == 401
        assert bearer(raw_a).get("/api/v1/customers/").status_code == 200


# --- a tenant's policy and events stay in that tenant -----------------------------------------------


def _age(token: AuthToken, policy: SecurityPolicy, by: timedelta) -> None:
    AuthToken.objects.filter(pk=token.pk).update(created_at=token.created_at - by, last_used_at=timezone.now())
    SessionTenantUse.objects.filter(session=token).update(last_used_at=timezone.now() - by)
    SecurityPolicy.all_tenants.filter(pk=policy.pk).update(updated_at=timezone.now() - by)


POLICIES = {
    "required 2FA": ({"require_2fa": True}, 403, "mfa_enrollment_required"),
    "IP allowlist": ({"ip_allowlist": ["10.0.0.0/8"]}, 403, "ip_not_allowed"),
    "idle timeout": ({"session_idle_timeout_minutes": 5}, 401, "tenant_session_expired"),
    "session lifetime": ({"session_max_lifetime_hours": 1}, 401, "tenant_session_expired"),
}


@pytest.mark.django_db
class TestPolicyStaysInItsTenant:
    @pytest.mark.parametrize("rule", list(POLICIES))
    def test_bs_policy_governs_the_session_in_b_only(self, rule, tenant_a, tenant_b):
        fields, code, reason = POLICIES[rule]
        user = tenant_a.users[Role.ADMIN]
        join(tenant_b, user, "MEMBER")
        policy = set_policy(tenant_b, **fields)
        client = client_for(user)  # one session, acting in A and in B
        in_a, in_b = {"HTTP_X_TENANT_ID": str(tenant_a.tenant.pk)}, {"HTTP_X_TENANT_ID": str(tenant_b.tenant.pk)}
        session = AuthToken.objects.filter(user=user).latest("created_at")
        client.get("/api/v1/customers/", **in_b)  # the session's last request in B
        _age(session, policy, timedelta(hours=2))

        refused = client.get("/api/v1/customers/", **in_b)
        assert refused.status_code == code and refused.json()["code"] == reason, refused.content
        for _ in range(2):  # refused in B does not spill over to A, and A's use does not reopen B
            assert client.get("/api/v1/customers/", **in_a).status_code == 200
            assert client.get("/api/v1/security/me/").status_code == 200
            assert client.get("/api/v1/tenants/").status_code == 200
            assert client.get("/api/v1/customers/", **in_b).status_code == code

    def test_turning_on_an_idle_timeout_does_not_end_busy_sessions(self, tenant_a):
        admin = tenant_a.owner
        client = client_for(admin, tenant_a.tenant)
        AuthToken.objects.filter(user=admin).update(created_at=timezone.now() - timedelta(hours=3))
        assert client.get("/api/v1/customers/").status_code == 200
        response = client.put("/api/v1/security/policy", {"session_idle_timeout_minutes": 30}, format="json")
        assert response.status_code == 200, response.content
        assert client.get("/api/v1/customers/").status_code == 200
        assert SessionTenantUse.objects.filter(tenant=tenant_a.tenant).count() == 1
        # Off again: the clocks are dropped, so turning it on later starts them afresh.
        off = client.put("/api/v1/security/policy", {"session_idle_timeout_minutes": None}, format="json")
        assert off.status_code == 200, off.content
        assert not SessionTenantUse.objects.filter(tenant=tenant_a.tenant).exists()

    def test_password_minimum_of_a_tenant_applies_once_the_user_joined_it(self, tenant_a, tenant_b):
        set_policy(tenant_b, min_password_length=40)
        user = tenant_a.users[Role.VIEWER]
        invitation = invite(tenant_b, user.email)
        client = client_for(user)
        url = "/api/v1/security/me/password/"
        twenty = "Twenty-chars-pass-01"
        # Invited is not joined: B's rule does not touch the user yet.
        changed = client.post(url, {"old_password": PASSWORD, "new_password": twenty}, format="json")
        assert changed.status_code == 200, changed.content
        client = client_for(user)
        assert client.post(f"{INBOX}{invitation.pk}/accept/").status_code == 201
        # Joined: the account's one password must now meet B's minimum when it is set...
        again = client.post(url, {"old_password": twenty, "new_password": "Another-twenty-pass2"}, format="json")
        assert again.status_code == 400 and "40" in str(again.json()["new_password"])
        # ...but an older password is not refused retroactively, in A or in B.
        assert client_for(user, tenant_a.tenant).get("/api/v1/tenants/").status_code == 200
        assert client_for(user, tenant_b.tenant).get("/api/v1/customers/").status_code == 200


@pytest.mark.django_db
class TestEventsStayInTheirTenant:
    def test_bs_events_have_nothing_of_the_users_sessions_in_a(self, tenant_a, tenant_b):
        user = tenant_a.users[Role.ADMIN]
        join(tenant_b, user, "ADMIN")
        client_for().post(LOGIN, {"email": user.email, "password": "wrong-password!"}, format="json")
        key = client_for().post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json").json()["key"]
        in_a = client_for(None, tenant_a.tenant)
        in_a.credentials(HTTP_AUTHORIZATION=f"Bearer {key}", REMOTE_ADDR="192.0.2.7", HTTP_USER_AGENT="A-agent")
        assert in_a.post("/api/v1/security/tokens/", {"name": "in A"}, format="json").status_code == 201
        assert in_a.put("/api/v1/security/policy", {"min_password_length": 12}, format="json").status_code == 200
        assert in_a.post("/api/v1/security/me/sessions/revoke-others/").status_code == 200

        b_rows = client_for(tenant_b.owner, tenant_b.tenant).get("/api/v1/security/events/").json()["results"]
        assert {r["type"] for r in b_rows} == {"member.added"}  # the user joining B: B's own business
        assert not any(r["ip"] == "192.0.2.7" or r["user_agent"] == "A-agent" for r in b_rows)
        assert not SecurityEvent.objects.filter(tenant=tenant_b.tenant).exclude(type="member.added").exists()

        a_rows = client_for(tenant_a.owner, tenant_a.tenant).get("/api/v1/security/events/").json()["results"]
        assert {"token.created", "policy.changed"} <= {r["type"] for r in a_rows}
        assert not any(r["type"].startswith(("login.", "session.")) for r in a_rows)

        mine = client_for(user).get("/api/v1/security/me/events/").json()["results"]
        assert {"login.success", "login.failure", "session.revoked", "token.created"} <= {r["type"] for r in mine}
