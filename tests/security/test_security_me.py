"""/api/v1/security/me/*: 2FA end to end (codes from pyotp), recovery codes, sessions, password,
my events; and the login's second step (docs/api.md)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from django.core.cache import cache
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.models import AuthToken
from apps.audit.models import AuditEvent
from apps.security.api import SecurityMeViewSet, SecurityMyEventViewSet, SecuritySessionViewSet
from apps.security.models import MfaChallenge, RecoveryCode, SecurityEvent
from apps.tenancy.roles import ORDERED
from tests.conftest import PASSWORD, client_for, make_user
from tests.security_helpers import CONFIRM, ENROL, LOGIN, LOGIN_MFA, code, enable_2fa, next_step

ME = "/api/v1/security/me/"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # login throttles and axes' cache live there
    yield
    cache.clear()


def login(email, password=PASSWORD):
    return client_for().post(LOGIN, {"email": email, "password": password}, format="json")


def events(user, type_):
    return SecurityEvent.objects.filter(user=user, type=type_, tenant__isnull=True)


@pytest.mark.django_db
class TestProfileAndRoles:
    covers = [SecurityMeViewSet]

    def test_every_role_reaches_its_own_profile(self, tenant_a):
        for role in ORDERED:
            user = tenant_a.users[role]
            response = client_for(user, tenant_a.tenant).get(ME)
            assert response.status_code == 200, (role, response.content)
            body = response.json()
            assert body["email"] == user.email
            assert body["mfa_enabled"] is False and body["recovery_codes_left"] == 0
            assert body["active_sessions"] == 1
            assert body["password_age_days"] == 0

    def test_anonymous_is_401(self, db):
        for url in (ME, ENROL, CONFIRM, ME + "sessions/", ME + "events/", ME + "password/"):
            assert client_for().get(url).status_code == 401, url

    def test_a_user_without_tenant_can_secure_the_account(self, db):
        user = make_user("lonely@example.com")
        enable_2fa(user)
        assert client_for(user).get(ME).json()["mfa_enabled"] is True


@pytest.mark.django_db
class TestTotpEndToEnd:
    def test_enrol_confirm_then_login_needs_the_code(self, tenant_a):
        user = tenant_a.users[ORDERED[0]]  # a VIEWER secures their account too
        client = client_for(user)
        enrol = client.post(ENROL)
        assert enrol.status_code == 200, enrol.content
        body = enrol.json()
        assert body["qr_svg"].startswith("<svg") and "otpauth://totp/" in body["otpauth_uri"]
        assert parse_qs(urlparse(body["otpauth_uri"]).query)["secret"] == [body["secret"]]
        # Not on before the confirmation: login still answers a key.
        assert "key" in login(user.email).json()
        assert client.post(CONFIRM, {"code": "000000"}, format="json").status_code == 400
        next_step(user)
        confirmed = client.post(CONFIRM, {"code": code(body["secret"])}, format="json")
        assert confirmed.status_code == 200, confirmed.content
        codes = confirmed.json()["recovery_codes"]
        assert len(codes) == 10 and len(set(codes)) == 10
        assert client.get(ME).json()["mfa_enabled"] is True
        assert client.get(ME).json()["recovery_codes_left"] == 10
        assert events(user, "mfa.enabled").exists()
        # Confirming again or enrolling again is a state conflict.
        assert client.post(ENROL).status_code == 409
        assert client.post(CONFIRM, {"code": code(body["secret"])}, format="json").status_code == 409

        first = login(user.email)
        assert first.status_code == 200
        assert first.json()["mfa_required"] is True and "key" not in first.json()
        next_step(user)
        done = client_for().post(
            LOGIN_MFA, {"mfa_token": first.json()["mfa_token"], "code": code(body["secret"])}, format="json"
        )
        assert done.status_code == 200, done.content
        key = done.json()["key"]
        fresh = client_for()
        fresh.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        assert fresh.get(ME).status_code == 200
        success = events(user, "login.success").first()
        assert success.reason == "totp"

    def test_mfa_token_is_single_use_short_lived_and_capped(self, db):
        user = make_user("mfa@example.com")
        secret, _codes = enable_2fa(user)
        token = login(user.email).json()["mfa_token"]
        ok = client_for().post(LOGIN_MFA, {"mfa_token": token, "code": code(secret)}, format="json")
        assert ok.status_code == 200
        next_step(user)
        again = client_for().post(LOGIN_MFA, {"mfa_token": token, "code": code(secret)}, format="json")
        assert again.status_code == 400 and "key" not in again.json()
        # Tampered and garbage tokens.
        for bad in (token[:-2] + "xx", "garbage", ""):
            assert (
                client_for().post(LOGIN_MFA, {"mfa_token": bad, "code": code(secret)}, format="json").status_code == 400
            )
        # Expired.
        token = login(user.email).json()["mfa_token"]
        MfaChallenge.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        assert (
            client_for().post(LOGIN_MFA, {"mfa_token": token, "code": code(secret)}, format="json").status_code == 400
        )
        # Five wrong codes end a challenge, even for the right code afterwards.
        token = login(user.email).json()["mfa_token"]
        for _ in range(5):
            next_step(user)
            assert (
                client_for().post(LOGIN_MFA, {"mfa_token": token, "code": "123456"}, format="json").status_code == 400
            )
        next_step(user)
        assert (
            client_for().post(LOGIN_MFA, {"mfa_token": token, "code": code(secret)}, format="json").status_code == 400
        )
        failures = events(user, "login.failure").filter(reason="bad_2fa_code")
        assert failures.count() == 5

    def test_wrong_password_never_reaches_the_second_step(self, db):
        user = make_user("pw@example.com")
        enable_2fa(user)
        response = login(user.email, "wrong-password!")
        assert response.status_code == 400 and "mfa_token" not in response.json()
        assert events(user, "login.failure").filter(reason="bad_password").exists()

    def test_recovery_code_works_once(self, db):
        user = make_user("rec@example.com")
        _secret, codes = enable_2fa(user)
        token = login(user.email).json()["mfa_token"]
        used = codes[3].upper().replace("-", " ")  # case and separators do not matter
        ok = client_for().post(LOGIN_MFA, {"mfa_token": token, "code": used}, format="json")
        assert ok.status_code == 200, ok.content
        assert events(user, "mfa.recovery_code_used").exists()
        assert events(user, "login.success").first().reason == "recovery_code"
        token = login(user.email).json()["mfa_token"]
        again = client_for().post(LOGIN_MFA, {"mfa_token": token, "code": codes[3]}, format="json")
        assert again.status_code == 400
        other = client_for().post(LOGIN_MFA, {"mfa_token": token, "code": codes[4]}, format="json")
        assert other.status_code == 200
        assert client_for(user).get(ME).json()["recovery_codes_left"] == 8

    def test_recovery_codes_are_stored_hashed_and_can_be_regenerated(self, db):
        user = make_user("regen@example.com")
        secret, codes = enable_2fa(user)
        stored = list(RecoveryCode.objects.filter(user=user).values_list("code_hash", flat=True))
        assert not any(c.replace("-", "") in h or c in h for c in codes for h in stored)
        client = client_for(user)
        url = ME + "2fa/recovery-codes/"
        assert client.post(url, {}, format="json").status_code == 400
        assert client.post(url, {"password": "wrong"}, format="json").status_code == 400
        fresh = client.post(url, {"code": code(secret)}, format="json")
        assert fresh.status_code == 200
        new_codes = fresh.json()["recovery_codes"]
        assert len(new_codes) == 10 and not set(new_codes) & set(codes)
        token = login(user.email).json()["mfa_token"]
        assert client_for().post(LOGIN_MFA, {"mfa_token": token, "code": codes[0]}, format="json").status_code == 400
        assert (
            client_for().post(LOGIN_MFA, {"mfa_token": token, "code": new_codes[0]}, format="json").status_code == 200
        )

    def test_disable_needs_a_code_or_the_password(self, db):
        user = make_user("off@example.com")
        secret, _codes = enable_2fa(user)
        client = client_for(user)
        url = ME + "2fa/disable/"
        assert client.post(url, {}, format="json").status_code == 400
        assert client.post(url, {"code": "000000"}, format="json").status_code == 400
        assert client.post(url, {"password": "not-it"}, format="json").status_code == 400
        assert TOTPDevice.objects.filter(user=user).exists()
        next_step(user)  # the wrong code above throttles the device for a second
        assert client.post(url, {"code": code(secret)}, format="json").status_code == 200
        assert not TOTPDevice.objects.filter(user=user).exists()
        assert not RecoveryCode.objects.filter(user=user).exists()
        assert events(user, "mfa.disabled").exists()
        assert "key" in login(user.email).json()
        assert client.post(url, {"password": PASSWORD}, format="json").status_code == 409
        # And with the password, after turning it on again.
        enable_2fa(user)
        assert client.post(url, {"password": PASSWORD}, format="json").status_code == 200

    def test_enrol_and_confirm_are_audited(self, db):
        user = make_user("aud@example.com")
        enable_2fa(user)
        actions = set(AuditEvent.objects.filter(actor=user).values_list("action", flat=True))
        assert {"security.totp_enrol", "security.mfa_enable"} <= actions


@pytest.mark.django_db
class TestSessions:
    covers = [SecuritySessionViewSet]

    def test_list_shows_my_sessions_with_ip_and_agent(self, db):
        user = make_user("sess@example.com")
        other = make_user("other@example.com")
        client_for(other)
        anon = client_for()
        key = anon.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json", HTTP_USER_AGENT="Tester/1.0")
        client = client_for()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.json()['key']}")
        client_for(user)
        response = client.get(ME + "sessions/")
        assert response.status_code == 200
        rows = response.json()["results"]
        assert len(rows) == 2
        mine = [r for r in rows if r["current"]]
        assert len(mine) == 1 and mine[0]["user_agent"] == "Tester/1.0" and mine[0]["ip"] == "127.0.0.1"
        assert {"created_at", "last_used_at", "prefix"} <= set(mine[0])

    def test_revoke_one_is_refused_at_once_and_others_are_404(self, db):
        user = make_user("rev@example.com")
        stranger = make_user("stranger@example.com")
        client = client_for(user)
        victim = client_for(user)
        victim_id = AuthToken.objects.filter(user=user).order_by("-created_at").first().pk
        assert victim.get(ME).status_code == 200
        assert client.delete(f"{ME}sessions/{victim_id}/").status_code == 204
        assert victim.get(ME).status_code == 401
        assert client.delete(f"{ME}sessions/{victim_id}/").status_code == 404
        theirs = AuthToken.issue(user=stranger, ttl=timedelta(hours=1))[0]
        assert client.delete(f"{ME}sessions/{theirs.pk}/").status_code == 404
        assert AuthToken.objects.get(pk=theirs.pk).revoked_at is None
        assert events(user, "session.revoked").exists()

    def test_revoke_all_others(self, db):
        user = make_user("all@example.com")
        client = client_for(user)
        others = [client_for(user) for _ in range(3)]
        response = client.post(ME + "sessions/revoke-others/")
        assert response.status_code == 200 and response.json() == {"revoked": 3}
        assert all(o.get(ME).status_code == 401 for o in others)
        assert client.get(ME).status_code == 200


@pytest.mark.django_db
class TestPasswordAndEvents:
    covers = [SecurityMyEventViewSet]

    def test_password_change_checks_old_password_and_validators(self, db):
        user = make_user("pwd@example.com")
        client = client_for(user)
        other = client_for(user)
        url = ME + "password/"
        assert (
            client.post(url, {"old_password": "bad", "new_password": "Fine-new-pass-77"}, format="json").status_code
            == 400
        )
        weak = client.post(url, {"old_password": PASSWORD, "new_password": "12345678"}, format="json")
        assert weak.status_code == 400 and "new_password" in weak.json()
        ok = client.post(url, {"old_password": PASSWORD, "new_password": "Fine-new-pass-77"}, format="json")
        assert ok.status_code == 200, ok.content
        assert client.get(ME).status_code == 200
        assert other.get(ME).status_code == 401
        assert "key" in login(user.email, "Fine-new-pass-77").json()
        assert events(user, "password.changed").count() == 1

    def test_my_events_are_mine_only(self, tenant_a):
        owner, viewer = tenant_a.owner, tenant_a.users[ORDERED[0]]
        login(owner.email)
        login(viewer.email, "wrong-password!")
        response = client_for(viewer).get(ME + "events/")
        assert response.status_code == 200
        rows = response.json()["results"]
        assert rows and all(r["user"] == str(viewer.pk) for r in rows)
        assert {r["type"] for r in rows} == {"login.failure"}
        assert rows[0]["reason"] == "bad_password"
        filtered = client_for(owner).get(ME + "events/", {"type": "login.success"}).json()["results"]
        assert len(filtered) == 1
        assert client_for(owner).get(ME + "events/", {"type": "bogus"}).status_code == 400

    def test_unknown_email_failure_is_recorded_without_user(self, db):
        login("ghost@example.com", "whatever-pass")
        event = SecurityEvent.objects.get(type="login.failure")
        assert event.user is None and event.reason == "unknown_user" and event.email == "ghost@example.com"

    def test_lockout_is_an_event(self, settings, db):
        user = make_user("lock@example.com")
        for _ in range(settings.AXES_FAILURE_LIMIT):
            login(user.email, "wrong-password!")
        assert login(user.email).status_code == 429
        assert events(user, "login.locked_out").exists()


@pytest.mark.django_db
def test_pyotp_and_django_otp_agree(db):
    """The secret handed out is the base32 form of django-otp's hex key."""
    user = make_user("agree@example.com")
    secret = client_for(user).post(ENROL).json()["secret"]
    device = TOTPDevice.objects.get(user=user)
    assert device.verify_token(pyotp.TOTP(secret).now())


@pytest.mark.django_db
def test_unknown_email_and_wrong_password_take_similar_time(settings):
    """No user enumeration by timing: with the production hasher (PBKDF2), Django hashes a dummy
    password for an unknown email, so both failures cost one hash; the security events add little."""
    import statistics
    import time

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    user = make_user("timing@example.com")

    def timed(email, i):
        start = time.perf_counter()
        response = client_for().post(
            LOGIN, {"email": email, "password": "wrong-password!"}, format="json", REMOTE_ADDR=f"10.9.0.{i}"
        )
        elapsed = time.perf_counter() - start
        assert response.status_code == 400
        return elapsed

    known = [timed(user.email, i) for i in range(1, 4)]
    unknown = [timed(f"nobody{i}@example.com", 10 + i) for i in range(1, 4)]
    ratio = statistics.median(known) / statistics.median(unknown)
    assert 0.5 < ratio < 2.0, (known, unknown)


@pytest.mark.django_db
def test_code_and_password_checks_are_rate_limited_and_throttled(settings):
    """A stolen session cannot guess the code or password at /security/me/*: the login rate applies,
    and django-otp's throttling of wrong codes is kept although the request fails."""
    user = make_user("guess@example.com")
    enable_2fa(user)
    client = client_for(user)
    client.post(ME + "2fa/disable/", {"code": "000000"}, format="json")
    assert TOTPDevice.objects.get(user=user).throttling_failure_count == 1
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"login": "3/min", "public": "100/min"},
    }
    cache.clear()
    codes = [client.post(ME + "2fa/disable/", {"password": "guess!"}, format="json").status_code for _ in range(4)]
    assert codes == [400, 400, 400, 429]
    assert client.get(ME).status_code == 200  # reading is not throttled
