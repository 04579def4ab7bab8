from django.utils import timezone
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from apps.accounts.models import AuthToken
from apps.common.serializers import ModelSerializer, Serializer
from apps.tenancy.roles import Role

from .models import ApiToken, GuardianFinding, SecurityEvent, SecurityPolicy, ShieldEvent, ShieldPolicy
from .policy import parse_cidrs
from .shield import RULES

# --- /security/me/ -------------------------------------------------------------------------------


@extend_schema_serializer(many=False)  # answered by the viewset's `list` route, as one object
class ProfileSerializer(Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()
    mfa_enabled = serializers.BooleanField()
    mfa_methods = serializers.ListField(child=serializers.CharField())
    recovery_codes_left = serializers.IntegerField()
    mfa_required_by_tenants = serializers.ListField(child=serializers.UUIDField())
    last_login = serializers.DateTimeField(allow_null=True)
    password_changed_at = serializers.DateTimeField(allow_null=True)
    password_age_days = serializers.IntegerField(allow_null=True)
    active_sessions = serializers.IntegerField()


# Answered once: an Idempotency-Key replay repeats the answer with these fields null (never stored).
SHOWN_ONCE = "null when the answer is an Idempotency-Key replay: a secret is shown once, never stored."


class TotpEnrolSerializer(Serializer):
    secret = serializers.CharField(allow_null=True, help_text=SHOWN_ONCE)
    otpauth_uri = serializers.CharField(allow_null=True, help_text=SHOWN_ONCE)
    qr_svg = serializers.CharField(allow_null=True, help_text=SHOWN_ONCE)


class CodeSerializer(Serializer):
    code = serializers.CharField(max_length=64, trim_whitespace=True)


class ReauthSerializer(Serializer):
    """A current 2FA code (or a recovery code), or the account password."""

    code = serializers.CharField(max_length=64, required=False, allow_blank=True)
    password = serializers.CharField(max_length=4096, required=False, allow_blank=True, trim_whitespace=False)

    def validate(self, attrs):
        if not attrs.get("code") and not attrs.get("password"):
            raise serializers.ValidationError({"code": ["A current code or your password is required."]})
        return attrs


class RecoveryCodesSerializer(Serializer):
    recovery_codes = serializers.ListField(child=serializers.CharField(), allow_null=True, help_text=SHOWN_ONCE)


class MyPasswordChangeSerializer(Serializer):
    old_password = serializers.CharField(max_length=4096, trim_whitespace=False)
    new_password = serializers.CharField(max_length=4096, trim_whitespace=False)


class RevokedCountSerializer(Serializer):
    revoked = serializers.IntegerField()


class SessionSerializer(ModelSerializer):
    current = serializers.SerializerMethodField()

    class Meta:
        model = AuthToken
        fields = ["id", "prefix", "ip", "user_agent", "created_at", "last_used_at", "expires_at", "current"]
        read_only_fields = fields

    def get_current(self, obj) -> bool:
        request = self.context.get("request")
        return bool(request and getattr(request.auth, "pk", None) == obj.pk)


class SecurityEventSerializer(ModelSerializer):
    user = serializers.UUIDField(source="user_id", read_only=True, allow_null=True)
    actor = serializers.UUIDField(source="actor_id", read_only=True, allow_null=True)
    type_label = serializers.CharField(source="get_type_display", read_only=True, help_text="the type in words")

    class Meta:
        model = SecurityEvent
        fields = [
            "id",
            "created_at",
            "type",
            "type_label",
            "reason",
            "user",
            "email",
            "actor",
            "ip",
            "user_agent",
            "data",
        ]
        read_only_fields = fields


# --- /security/tokens/ -----------------------------------------------------------------------------


class ApiTokenSerializer(ModelSerializer):
    role = serializers.CharField(source="max_role", read_only=True)
    user = serializers.UUIDField(source="user_id", read_only=True)
    user_email = serializers.EmailField(source="user.email", read_only=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "role",
            "user",
            "user_email",
            "status",
            "created_at",
            "expires_at",
            "allowed_ips",
            "last_used_at",
            "last_used_ip",
            "revoked_at",
        ]
        read_only_fields = fields

    def get_status(self, obj) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return "expired"
        return "active"


class ApiTokenCreateSerializer(Serializer):
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    allowed_ips = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=100)


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(
        read_only=True, allow_null=True, help_text="The secret (mp_…), shown this once; " + SHOWN_ONCE
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


# --- /security/policy ------------------------------------------------------------------------------


class SecurityPolicySerializer(ModelSerializer):
    min_password_length = serializers.IntegerField(min_value=8, max_value=128, required=False)
    session_idle_timeout_minutes = serializers.IntegerField(
        min_value=5, max_value=60 * 24 * 30, allow_null=True, required=False
    )
    session_max_lifetime_hours = serializers.IntegerField(
        min_value=1, max_value=24 * 365, allow_null=True, required=False
    )
    token_max_lifetime_days = serializers.IntegerField(min_value=1, max_value=3650, allow_null=True, required=False)
    event_retention_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
    ip_allowlist = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=100)
    require_2fa = serializers.BooleanField(required=False)
    # None until the policy is first saved (a tenant that never changed it reads the defaults).
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = SecurityPolicy
        fields = [
            "require_2fa",
            "min_password_length",
            "session_idle_timeout_minutes",
            "session_max_lifetime_hours",
            "token_max_lifetime_days",
            "ip_allowlist",
            "event_retention_days",
            "updated_at",
        ]
        read_only_fields = ["updated_at"]

    def validate_ip_allowlist(self, value):
        return parse_cidrs(value, "ip_allowlist")


class MfaLoginSerializer(Serializer):
    mfa_token = serializers.CharField(max_length=1000)
    code = serializers.CharField(max_length=64)


# --- /security/shield/* ----------------------------------------------------------------------------


class ShieldPolicySerializer(ModelSerializer):
    rate_limit_per_second = serializers.IntegerField(min_value=1, max_value=100_000, allow_null=True, required=False)
    rate_limit_burst = serializers.IntegerField(min_value=0, max_value=100_000, required=False)
    max_body_size_kb = serializers.IntegerField(
        min_value=1, max_value=10 * 1024 * 1024, allow_null=True, required=False
    )
    allow_cidrs = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=100)
    block_cidrs = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=100)
    blocked_user_agents = serializers.ListField(
        child=serializers.CharField(max_length=100, trim_whitespace=False), required=False, max_length=100
    )
    blocked_paths = serializers.ListField(child=serializers.CharField(max_length=201), required=False, max_length=100)

    class Meta:
        model = ShieldPolicy
        fields = [
            "id",
            "site",
            "enabled",
            "rate_limit_per_second",
            "rate_limit_burst",
            "allow_cidrs",
            "block_cidrs",
            "blocked_user_agents",
            "blocked_paths",
            "max_body_size_kb",
            "maintenance_mode",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class ShieldNginxSerializer(Serializer):
    http = serializers.CharField()
    server = serializers.CharField()


class ShieldEventSerializer(ModelSerializer):
    rule = serializers.ChoiceField(choices=[(r, r) for r in RULES])

    class Meta:
        model = ShieldEvent
        fields = ["id", "occurred_at", "ip", "rule", "site", "website", "method", "path", "user_agent", "created_at"]
        read_only_fields = ["id", "website", "created_at"]


class ShieldIngestSerializer(Serializer):
    events = ShieldEventSerializer(many=True, allow_empty=False, max_length=1000)


class ShieldIngestedSerializer(Serializer):
    ingested = serializers.IntegerField()


class ShieldRuleCountSerializer(Serializer):
    rule = serializers.CharField()
    count = serializers.IntegerField()
    last_seen = serializers.DateTimeField()


# --- /guardian ----------------------------------------------------------------------------------------


class GuardianFindingSerializer(ModelSerializer):
    check = serializers.CharField(source="check_name", read_only=True)

    class Meta:
        model = GuardianFinding
        fields = [
            "id",
            "check",
            "severity",
            "title",
            "resource_type",
            "resource_id",
            "resource_repr",
            "evidence",
            "remediation",
            "status",
            "first_seen_at",
            "last_seen_at",
            "resolved_at",
            "created_at",
        ]
        read_only_fields = fields


class GuardianCheckSerializer(Serializer):
    name = serializers.CharField()
    severity = serializers.CharField()
    title = serializers.CharField()
    remediation = serializers.CharField()
    last_run_at = serializers.DateTimeField(allow_null=True, help_text="when this tenant's last scan ran it")
    last_run_ok = serializers.BooleanField(
        allow_null=True, help_text="false: it failed (last_error) or could not look at some resources"
    )
    last_error = serializers.CharField(allow_blank=True)
    unknown = serializers.IntegerField(help_text="resources it could not look at in its last run")
    open_findings = serializers.IntegerField()
    latest_found_at = serializers.DateTimeField(allow_null=True, help_text="when its newest open finding was found")


class GuardianScanSerializer(Serializer):
    job = serializers.UUIDField()
    status = serializers.CharField()
