import hashlib
import secrets
import uuid

from django.contrib.auth.models import AbstractBaseUser, PermissionsMixin
from django.contrib.auth.models import BaseUserManager as DjangoBaseUserManager
from django.db import models
from django.utils import timezone

from apps.common import context

from .extensions import TOKEN_RESOLVERS


class UserManager(DjangoBaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An email address is required.")
        email = self.normalize_email(email).lower()
        user = self.model(email=email, **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, username):
        return self.get(email__iexact=username)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in with an email address.

    ``is_staff`` marks a platform operator (the Django admin); tenant roles live on
    ``tenancy.Membership``. The two axes never mix.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField("email address", unique=True)
    full_name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="Platform operator: may use the admin.")
    date_joined = models.DateTimeField(default=timezone.now)
    password_changed_at = models.DateTimeField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []
    audit_fields = ("email", "full_name", "is_active", "is_staff", "is_superuser")

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def created_at(self):
        return self.date_joined

    def set_password(self, raw_password):
        super().set_password(raw_password)
        self.password_changed_at = timezone.now()
        self._password_changed = True

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        if getattr(self, "_password_changed", False) and self.pk:
            self._password_changed = False
            self.end_other_sessions()

    def end_other_sessions(self) -> int:
        """A new password ends every bearer session but the one that set it."""
        keep = context.current().token_id
        live = self.auth_tokens.filter(revoked_at__isnull=True)
        if keep is not None:
            live = live.exclude(pk=keep)
        return live.update(revoked_at=timezone.now())

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email


def hash_token(raw: str) -> str:
    # The secrets are 256-bit random values, so a fast hash is enough: there is nothing to brute force.
    return hashlib.sha256(raw.encode()).hexdigest()


class AuthTokenQuerySet(models.QuerySet):
    def live(self):
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class AuthToken(models.Model):
    """A bearer session created by login. Only a hash of the secret is stored."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="auth_tokens", db_index=False)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="First characters of the secret, for display.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    # How the login proved who it was: "password", or the second factor that followed it ("totp",
    # "recovery_code"). Operators' platform-wide powers need a "totp" session (apps/accounts/operators.py).
    method = models.CharField(max_length=16, default="password")

    objects = AuthTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_live(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    @classmethod
    def issue(
        cls, *, user: User, ttl, ip: str | None = None, user_agent: str = "", method: str = "password"
    ) -> tuple["AuthToken", str]:
        raw = secrets.token_urlsafe(32)
        while raw.startswith(tuple(TOKEN_RESOLVERS.keys())):
            # A session key that looked like another kind of token (e.g. `mp_…`) would be sent to
            # that kind's resolver and refused: draw again.
            raw = secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user,
            key_hash=hash_token(raw),
            prefix=raw[:8],
            expires_at=timezone.now() + ttl if ttl else None,
            ip=ip,
            user_agent=user_agent[:255],
            method=method,
        )
        return token, raw
