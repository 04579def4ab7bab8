"""The operators' admin requires 2FA (django-otp) and its logins are security events; a database
dump holds no token, recovery code or password in clear."""

from __future__ import annotations

import io
import re
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.security.models import SecurityEvent
from tests.conftest import PASSWORD, client_for, make_user
from tests.security_helpers import CONFIRM, ENROL, LOGIN, next_step

User = get_user_model()


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def enrol_operator(email: str) -> str:
    out = io.StringIO()
    call_command("otp_enrol", email, stdout=out)
    uri = out.getvalue().splitlines()[0]
    assert uri.startswith("otpauth://totp/")
    return parse_qs(urlparse(uri).query)["secret"][0]


@pytest.mark.django_db
class TestAdminRequires2fa:
    def test_staff_without_a_verified_device_is_sent_to_the_login(self):
        operator = User.objects.create_superuser("op@mpanel.test", PASSWORD)
        client = Client()
        client.force_login(operator)
        response = client.get("/admin/")
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")

    def test_login_with_password_and_code_then_event(self):
        operator = User.objects.create_superuser("op@mpanel.test", PASSWORD)
        secret = enrol_operator(operator.email)
        client = Client()
        page = client.get("/admin/login/")
        assert page.status_code == 200 and b"otp_token" in page.content
        no_code = client.post("/admin/login/", {"username": operator.email, "password": PASSWORD})
        assert no_code.status_code == 200  # the form again, now offering the operator's device
        device = TOTPDevice.objects.get(user=operator)
        assert device.persistent_id.encode() in no_code.content
        assert client.get("/admin/").status_code == 302
        bad = client.post(
            "/admin/login/",
            {
                "username": operator.email,
                "password": PASSWORD,
                "otp_device": device.persistent_id,
                "otp_token": "000000",
            },
        )
        assert bad.status_code == 200 and client.get("/admin/").status_code == 302
        assert SecurityEvent.objects.filter(type="login.failure", user=operator, reason="bad_2fa_code").exists()
        next_step(operator)
        ok = client.post(
            "/admin/login/",
            {
                "username": operator.email,
                "password": PASSWORD,
                "otp_device": device.persistent_id,
                "otp_token": pyotp.TOTP(secret).now(),
            },
        )
        assert ok.status_code == 302, ok.content[:500]
        assert client.get("/admin/").status_code == 200
        event = SecurityEvent.objects.get(type="admin.login", user=operator)
        assert event.reason == "otp" and event.ip == "127.0.0.1"

    def test_admin_login_failure_is_an_event(self):
        operator = User.objects.create_superuser("op@mpanel.test", PASSWORD)
        enrol_operator(operator.email)
        Client().post("/admin/login/", {"username": operator.email, "password": "wrong!", "otp_token": "123456"})
        event = SecurityEvent.objects.get(type="login.failure", user=operator)
        assert event.reason == "bad_password" and event.data["via"] == "admin"

    def test_operator_revoking_a_session_is_an_event(self):
        from datetime import timedelta

        from django_otp import DEVICE_ID_SESSION_KEY

        from apps.accounts.models import AuthToken

        operator = User.objects.create_superuser("op@mpanel.test", PASSWORD)
        member = make_user("m@example.com")
        token, _raw = AuthToken.issue(user=member, ttl=timedelta(hours=1))
        client = Client()
        client.force_login(operator)
        device = TOTPDevice.objects.create(user=operator, name="t", confirmed=True)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
        response = client.post(
            "/admin/accounts/authtoken/", {"action": "revoke", "_selected_action": [str(token.pk)], "confirmed": "yes"}
        )
        assert response.status_code == 302
        event = SecurityEvent.objects.get(type="session.revoked", user=member, tenant__isnull=True)
        assert event.reason == "operator" and event.actor == operator

    def test_enrol_command_refuses_unknown_users_and_duplicates(self):
        with pytest.raises(CommandError):
            call_command("otp_enrol", "nobody@mpanel.test", stdout=io.StringIO())
        User.objects.create_superuser("op@mpanel.test", PASSWORD)
        enrol_operator("op@mpanel.test")
        with pytest.raises(CommandError):
            call_command("otp_enrol", "op@mpanel.test", stdout=io.StringIO())
        enrol_operator_out = io.StringIO()
        call_command("otp_enrol", "op@mpanel.test", "--replace", stdout=enrol_operator_out)
        assert "otpauth://" in enrol_operator_out.getvalue()


@pytest.mark.django_db
def test_a_database_dump_holds_no_secret_in_clear(tenant_a):
    password = "Very-secret-passphrase-42"
    user = make_user("dump@example.com", password=password)
    session_key = client_for().post(LOGIN, {"email": user.email, "password": password}, format="json").json()["key"]
    # Enrolment answered with Idempotency-Key headers: the stored replays must not keep the secrets.
    me = client_for(user)
    totp_secret = me.post(ENROL, HTTP_IDEMPOTENCY_KEY="enrol").json()["secret"]
    confirmed = me.post(CONFIRM, {"code": pyotp.TOTP(totp_secret).now()}, format="json", HTTP_IDEMPOTENCY_KEY="c")
    recovery_codes = confirmed.json()["recovery_codes"]
    replay = me.post(CONFIRM, {"code": pyotp.TOTP(totp_secret).now()}, format="json", HTTP_IDEMPOTENCY_KEY="c")
    assert replay["Idempotent-Replayed"] == "true" and replay.json()["recovery_codes"] is None
    owner = client_for(tenant_a.owner, tenant_a.tenant)
    created = owner.post(
        "/api/v1/security/tokens/", {"name": "ci"}, format="json", HTTP_IDEMPOTENCY_KEY="dump-key"
    ).json()
    api_token = created["token"]
    assert api_token.startswith("mp_")
    next_step(tenant_a.owner)

    out = io.StringIO()
    call_command("dumpdata", "--all", stdout=out)
    dump = out.getvalue()
    assert len(dump) > 10_000
    secrets = [password, PASSWORD, session_key, api_token, api_token[3:], *recovery_codes]
    # The TOTP key itself must stay readable to check codes (django-otp keeps it in hex); its
    # base32 form, as handed to the user, is not stored anywhere else.
    secrets.append(totp_secret)
    secrets += [c.replace("-", "") for c in recovery_codes]
    for secret in secrets:
        assert secret not in dump, f"{secret[:6]}… is in the dump"
    assert re.search(r"md5\$|pbkdf2_sha256\$", dump)  # passwords are there, hashed


@pytest.mark.django_db
def test_security_admin_pages_load(client, tenant_a):
    from django.contrib import admin
    from django.urls import reverse
    from django.utils import timezone

    from apps.security import guardian
    from apps.security.models import (
        ApiToken,
        GuardianCheckRun,
        GuardianFinding,
        SecurityPolicy,
        ShieldEvent,
        ShieldPolicy,
    )
    from apps.security.services import token_create
    from apps.tenancy.roles import Role
    from tests.conftest import admin_login

    operator = User.objects.create_superuser("op@mpanel.test", PASSWORD)
    admin_login(client, operator)
    with tenant_a.scope():
        token, _ = token_create(tenant=tenant_a.tenant, actor=tenant_a.owner, actor_role=Role.OWNER, name="t")
        rows = {
            ApiToken: token,
            SecurityPolicy: SecurityPolicy.objects.create(tenant=tenant_a.tenant),
            ShieldPolicy: ShieldPolicy.objects.create(tenant=tenant_a.tenant, site="a.example.com"),
            ShieldEvent: ShieldEvent.objects.create(
                tenant=tenant_a.tenant, occurred_at=timezone.now(), ip="203.0.113.1", rule="ip_block"
            ),
        }
        guardian.scan(tenant=tenant_a.tenant)
        rows[GuardianFinding] = GuardianFinding.objects.first()
        rows[GuardianCheckRun] = GuardianCheckRun.objects.first()
    rows[SecurityEvent] = SecurityEvent.objects.first()
    ours = {m for m in admin.site._registry if m._meta.app_label == "security"}
    assert ours == set(rows)
    for model, obj in rows.items():
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        assert client.get(reverse(f"{name}_changelist")).status_code == 200, model
        assert client.get(reverse(f"{name}_changelist"), {"q": "x"}).status_code == 200, model
        assert client.get(reverse(f"{name}_change", args=[obj.pk])).status_code == 200, model
    assert b"key_hash" not in client.get(reverse("admin:security_apitoken_change", args=[token.pk])).content
    response = client.post(
        reverse("admin:security_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [str(token.pk)], "confirmed": "yes"},
    )
    assert response.status_code == 302
    assert ApiToken.all_tenants.get(pk=token.pk).revoked_at is not None
