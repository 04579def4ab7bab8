import re
from datetime import timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from apps.accounts.extensions import LOGIN_CHALLENGES, SESSION_CHECKS, TOKEN_RESOLVERS
from apps.accounts.models import AuthToken, hash_token
from apps.audit.models import AuditEvent
from tests.conftest import PASSWORD, client_for, make_user
from tests.throttle_support import throttle_cache  # noqa: F401 (fixture: locmem and the real Redis)

LOGIN = "/api/v1/auth/login/"


@pytest.fixture(autouse=True)
def _fresh_throttles():
    cache.clear()  # login throttle history lives in the cache
    yield
    cache.clear()


def login(client, email, password):
    return client.post(LOGIN, {"email": email, "password": password}, format="json")


@pytest.mark.django_db
class TestLogin:
    def test_login_gives_a_working_bearer_token_stored_hashed(self):
        user = make_user("alice@example.com")
        client = client_for()
        response = login(client, "Alice@Example.com", PASSWORD)
        assert response.status_code == 200, response.content
        key = response.json()["key"]
        token = AuthToken.objects.get(user=user)
        assert token.key_hash == hash_token(key) and key not in (token.key_hash, token.prefix)
        assert token.expires_at > timezone.now()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        me = client.get("/api/v1/auth/user/")
        assert me.status_code == 200 and me.json()["email"] == "alice@example.com"
        assert AuditEvent.objects.filter(action="auth.login", actor=user).exists()

    def test_wrong_password_and_unknown_email_get_the_same_answer(self):
        make_user("bob@example.com")
        make_user("inactive@example.com", is_active=False)
        client = client_for()
        wrong = login(client, "bob@example.com", "nope-nope-nope")
        unknown = login(client, "nobody@example.com", "nope-nope-nope")
        inactive = login(client, "inactive@example.com", PASSWORD)
        assert wrong.status_code == unknown.status_code == inactive.status_code == 400
        assert wrong.json() == unknown.json() == inactive.json()
        assert not AuthToken.objects.exists()

    def test_bad_body_is_400(self):
        client = client_for()
        assert client.post(LOGIN, {"email": "not-an-email", "password": "x"}, format="json").status_code == 400
        assert client.post(LOGIN, {}, format="json").status_code == 400
        assert client.post(LOGIN, "garbage", content_type="application/json").status_code == 400

    def test_logout_revokes_the_token_at_once(self):
        make_user("carol@example.com")
        client = client_for()
        key = login(client, "carol@example.com", PASSWORD).json()["key"]
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        assert client.post("/api/v1/auth/logout/").status_code == 200
        assert client.get("/api/v1/auth/user/").status_code == 401
        assert AuthToken.objects.get().revoked_at is not None

    def test_expired_and_revoked_and_garbage_tokens_are_401(self):
        user = make_user("dave@example.com")
        token, raw = AuthToken.issue(user=user, ttl=timedelta(hours=1))
        client = client_for()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert client.get("/api/v1/auth/user/").status_code == 200
        AuthToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert client.get("/api/v1/auth/user/").status_code == 401
        token2, raw2 = AuthToken.issue(user=user, ttl=timedelta(hours=1))
        AuthToken.objects.filter(pk=token2.pk).update(revoked_at=timezone.now())
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw2}")
        assert client.get("/api/v1/auth/user/").status_code == 401
        for header in ("Bearer", "Bearer a b", "Bearer nonsense"):
            client.credentials(HTTP_AUTHORIZATION=header)
            assert client.get("/api/v1/auth/user/").status_code == 401, header
        assert client.get("/api/v1/auth/user/")["WWW-Authenticate"] == "Bearer"

    def test_deactivated_user_token_stops_working(self):
        user = make_user("erin@example.com")
        client = client_for(user)
        assert client.get("/api/v1/auth/user/").status_code == 200
        user.is_active = False
        user.save()
        assert client.get("/api/v1/auth/user/").status_code == 401

    def test_lockout_after_repeated_failures_even_with_the_right_password(self, settings):
        make_user("frank@example.com")
        client = client_for()
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert login(client, "frank@example.com", "wrong-password!").status_code == 400
        # The failure that reaches the limit is answered with the lockout, and so is the right password.
        assert login(client, "frank@example.com", "wrong-password!").status_code == 429
        locked = login(client, "frank@example.com", PASSWORD)
        assert locked.json()["code"] == "locked_out"
        assert locked.status_code == 429
        assert int(locked["Retry-After"]) > 0
        assert not AuthToken.objects.exists()

    @pytest.mark.usefixtures("throttle_cache")
    def test_login_is_rate_limited(self, settings):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"login": "3/min", "public": "100/min"},
        }
        client = client_for()
        codes = [login(client, f"u{i}@example.com", "whatever-pass").status_code for i in range(5)]
        assert codes[:3] == [400, 400, 400]
        assert codes[3:] == [429, 429]


@pytest.mark.django_db
class TestRegistrationAndPasswords:
    def test_register_then_log_in_at_once(self):
        client = client_for()
        response = client.post(
            "/api/v1/auth/registration/",
            {"email": "new@example.com", "password1": "A-long-passphrase-1", "password2": "A-long-passphrase-1"},
            format="json",
        )
        assert response.status_code == 201, response.content
        assert response.json()["email"] == "new@example.com"
        assert login(client, "new@example.com", "A-long-passphrase-1").status_code == 200

    def test_registration_rejects_bad_input(self):
        make_user("taken@example.com")
        client = client_for()
        url = "/api/v1/auth/registration/"
        for body in (
            {"email": "taken@example.com", "password1": "A-long-passphrase-1", "password2": "A-long-passphrase-1"},
            {"email": "x@example.com", "password1": "A-long-passphrase-1", "password2": "different-pass-2"},
            {"email": "y@example.com", "password1": "short", "password2": "short"},
            {"email": "bad", "password1": "A-long-passphrase-1", "password2": "A-long-passphrase-1"},
        ):
            assert client.post(url, body, format="json").status_code == 400, body

    def test_password_change_needs_the_old_password(self):
        user = make_user("gina@example.com")
        client = client_for(user)
        other_session = client_for(user)
        url = "/api/v1/auth/password/change/"
        bad = client.post(
            url,
            {"old_password": "wrong", "new_password1": "Brand-new-pass-9", "new_password2": "Brand-new-pass-9"},
            format="json",
        )
        assert bad.status_code == 400
        ok = client.post(
            url,
            {"old_password": PASSWORD, "new_password1": "Brand-new-pass-9", "new_password2": "Brand-new-pass-9"},
            format="json",
        )
        assert ok.status_code == 200, ok.content
        assert login(client_for(), "gina@example.com", "Brand-new-pass-9").status_code == 200
        # The session that changed it goes on; every other session of the user ends.
        assert client.get("/api/v1/auth/user/").status_code == 200
        assert other_session.get("/api/v1/auth/user/").status_code == 401

    @pytest.mark.usefixtures("throttle_cache")
    def test_password_change_and_reset_are_rate_limited(self, settings):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "password": "3/min"},
        }
        client = client_for(make_user("ivy@example.com"))
        url = "/api/v1/auth/password/change/"
        wrong = {"old_password": "guess", "new_password1": "Brand-new-pass-9", "new_password2": "Brand-new-pass-9"}
        assert [client.post(url, wrong, format="json").status_code for _ in range(3)] == [400, 400, 400]
        limited = client.post(url, {**wrong, "old_password": PASSWORD}, format="json")
        assert limited.status_code == 429 and "Retry-After" in limited.headers
        assert login(client_for(), "ivy@example.com", PASSWORD).status_code == 200  # the password did not change
        anonymous = client_for()
        answers = [
            anonymous.post("/api/v1/auth/password/reset/", {"email": "ivy@example.com"}, format="json").status_code
            for _ in range(4)
        ]
        assert answers == [200, 200, 200, 429]

    def test_password_reset_by_email(self):
        old_session = client_for(make_user("hank@example.com"))
        client = client_for()
        assert (
            client.post("/api/v1/auth/password/reset/", {"email": "hank@example.com"}, format="json").status_code == 200
        )
        assert len(mail.outbox) == 1
        match = re.search(r"/password/reset/confirm/([^/]+)/([^/\s]+)/", mail.outbox[0].body)
        assert match, mail.outbox[0].body
        uid, token = match.groups()
        response = client.post(
            "/api/v1/auth/password/reset/confirm/",
            {"uid": uid, "token": token, "new_password1": "Reset-pass-2026", "new_password2": "Reset-pass-2026"},
            format="json",
        )
        assert response.status_code == 200, response.content
        assert old_session.get("/api/v1/auth/user/").status_code == 401
        assert login(client, "hank@example.com", "Reset-pass-2026").status_code == 200
        bogus = client.post(
            "/api/v1/auth/password/reset/confirm/",
            {"uid": uid, "token": "bad-token", "new_password1": "Other-pass-2026", "new_password2": "Other-pass-2026"},
            format="json",
        )
        assert bogus.status_code == 400

    def test_reset_for_unknown_email_does_not_leak(self):
        client = client_for()
        response = client.post("/api/v1/auth/password/reset/", {"email": "ghost@example.com"}, format="json")
        assert response.status_code == 200
        assert mail.outbox == []

    def test_user_details_update_own_name_only(self):
        user = make_user("ivy@example.com")
        client = client_for(user)
        response = client.patch(reverse("rest_user_details"), {"full_name": "Ivy Q", "email": "x@y.z"}, format="json")
        assert response.status_code == 200
        user.refresh_from_db()
        assert user.full_name == "Ivy Q" and user.email == "ivy@example.com"


def test_the_security_center_registers_on_the_sign_in_extension_points():
    """Registered when its modules load (SecurityConfig.ready), never imported by accounts."""
    from apps.security import authentication, guardian, mfa

    assert TOKEN_RESOLVERS["mp_"] is authentication.resolve_api_token
    assert list(LOGIN_CHALLENGES) == [mfa.login_challenge]
    assert list(SESSION_CHECKS) == []
    assert {"owners_without_2fa", "world_writable_files", "zone_without_caa"} <= set(guardian.CHECKS.keys())
