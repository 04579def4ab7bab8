"""The security center's API: /security/me/*, /security/tokens, /security/events, /security/policy,
and the login's second step /auth/login/mfa/."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import AuthToken
from apps.accounts.serializers import DetailSerializer, TokenResponseSerializer
from apps.accounts.services import issue_session
from apps.common.api import AccountViewSet
from apps.common.exceptions import Forbidden
from apps.common.throttling import DynamicScopedRateThrottle
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet, TenantReadOnlyViewSet

from . import guardian, mfa, services, shield
from .filters import GuardianFindingFilter, SecurityEventFilter, ShieldEventFilter
from .models import (
    ApiToken,
    FindingStatus,
    GuardianFinding,
    SecurityEvent,
    SecurityPolicy,
    ShieldEvent,
    ShieldPolicy,
)
from .policy import policies_of_user
from .serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    CodeSerializer,
    GuardianCheckSerializer,
    GuardianFindingSerializer,
    GuardianScanSerializer,
    MfaLoginSerializer,
    MyPasswordChangeSerializer,
    ProfileSerializer,
    ReauthSerializer,
    RecoveryCodesSerializer,
    RevokedCountSerializer,
    SecurityEventSerializer,
    SecurityPolicySerializer,
    SessionSerializer,
    ShieldEventSerializer,
    ShieldIngestedSerializer,
    ShieldIngestSerializer,
    ShieldNginxSerializer,
    ShieldPolicySerializer,
    ShieldRuleCountSerializer,
    TotpEnrolSerializer,
)

# --- /auth/login/mfa/ ----------------------------------------------------------------------------------


class MfaLoginView(APIView):
    """The second step of a login with 2FA: the `mfa_token` from /auth/login/ and a current code
    (or a recovery code, once) → `{"key"}`. A token is single use and dies after 5 minutes or
    5 wrong codes."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [DynamicScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(
        request=MfaLoginSerializer,
        responses={200: TokenResponseSerializer, 400: OpenApiResponse(description="Wrong or expired code")},
        summary="Complete a login with a two-factor code",
    )
    def post(self, request):
        serializer = MfaLoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, method = mfa.login_complete(
            mfa_token=serializer.validated_data["mfa_token"], code=serializer.validated_data["code"]
        )
        return Response({"key": issue_session(user, method=method)}, status=status.HTTP_200_OK)


# Guessing a code or the password through these must cost as much as guessing at /auth/login/.
REAUTH_THROTTLE = {"throttle_classes": [DynamicScopedRateThrottle], "throttle_scope": "login"}


# --- /security/me/* (every signed-in user, own account only; never with an API token) --------------


class SecurityMeViewSet(AccountViewSet):
    """My own account's security: profile, TOTP 2FA, recovery codes and password."""

    serializer_class = ProfileSerializer
    pagination_class = None  # `list` answers the one profile
    # A TOTP secret and recovery codes are shown once: never kept for Idempotency-Key replays.
    idempotency_secret_fields = ("secret", "otpauth_uri", "qr_svg", "recovery_codes")
    throttle_scope: str | None = None  # set per action (REAUTH_THROTTLE)

    def get_queryset(self):
        return AuthToken.objects.none()

    @extend_schema(responses={200: ProfileSerializer}, summary="My security profile")
    def list(self, request):
        user = request.user
        changed = user.password_changed_at
        enabled = mfa.has_2fa(user)
        data = {
            "id": user.pk,
            "email": user.email,
            "mfa_enabled": enabled,
            "mfa_methods": ["totp"] if enabled else [],
            "recovery_codes_left": mfa.recovery_codes_left(user),
            "mfa_required_by_tenants": [p.tenant_id for p in policies_of_user(user) if p.require_2fa],
            "last_login": user.last_login,
            "password_changed_at": changed,
            "password_age_days": (timezone.now() - changed).days if changed else None,
            "active_sessions": services.my_sessions(user).count(),
        }
        return Response(ProfileSerializer(data).data)

    @extend_schema(request=None, responses={200: TotpEnrolSerializer}, summary="Start TOTP enrolment")
    @action(detail=False, methods=["post"], url_path="2fa/totp")
    def totp(self, request):
        return Response(TotpEnrolSerializer(mfa.totp_enrol(user=request.user)).data)

    @extend_schema(
        request=CodeSerializer,
        responses={200: RecoveryCodesSerializer},
        summary="Confirm TOTP with a code; answers the recovery codes once",
    )
    @action(detail=False, methods=["post"], url_path="2fa/totp/confirm", **REAUTH_THROTTLE)
    def totp_confirm(self, request):
        serializer = CodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        codes = mfa.totp_confirm(user=request.user, code=serializer.validated_data["code"])
        return Response({"recovery_codes": codes})

    @extend_schema(request=ReauthSerializer, responses={200: DetailSerializer}, summary="Turn 2FA off")
    @action(detail=False, methods=["post"], url_path="2fa/disable", **REAUTH_THROTTLE)
    def mfa_disable(self, request):
        serializer = ReauthSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        mfa.mfa_disable(user=request.user, **serializer.validated_data)
        return Response({"detail": "Two-factor authentication is off."})

    @extend_schema(
        request=ReauthSerializer, responses={200: RecoveryCodesSerializer}, summary="Replace my recovery codes"
    )
    @action(detail=False, methods=["post"], url_path="2fa/recovery-codes", **REAUTH_THROTTLE)
    def recovery_codes(self, request):
        serializer = ReauthSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        codes = mfa.recovery_codes_regenerate(user=request.user, **serializer.validated_data)
        return Response({"recovery_codes": codes})

    @extend_schema(request=MyPasswordChangeSerializer, responses={200: DetailSerializer}, summary="Change my password")
    @action(detail=False, methods=["post"], url_path="password", **REAUTH_THROTTLE)
    def password(self, request):
        serializer = MyPasswordChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.password_change(user=request.user, **serializer.validated_data)
        return Response({"detail": "Password changed; your other sessions were ended."})


class SecuritySessionViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, AccountViewSet):
    """My live bearer sessions; DELETE revokes one (refused at once), `revoke-others` all but this one."""

    serializer_class = SessionSerializer
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    ordering = ["-created_at"]
    ordering_fields = ["created_at", "last_used_at"]
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AuthToken.objects.none()
        return services.my_sessions(self.request.user).order_by("-created_at")

    def destroy(self, request, *args, **kwargs):
        services.session_revoke(user=request.user, session_id=kwargs["pk"])
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: RevokedCountSerializer}, summary="Revoke all my other sessions")
    @action(detail=False, methods=["post"], url_path="revoke-others")
    def revoke_others(self, request):
        keep = request.auth.pk if isinstance(request.auth, AuthToken) else None
        return Response({"revoked": services.sessions_revoke_others(user=request.user, keep_id=keep)})


class SecurityMyEventViewSet(mixins.ListModelMixin, AccountViewSet):
    """My own security events (logins, 2FA, sessions, password, tokens), newest first."""

    serializer_class = SecurityEventSerializer
    filterset_class = SecurityEventFilter
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return SecurityEvent.objects.none()
        return SecurityEvent.objects.filter(user=self.request.user, tenant__isnull=True)


# --- /security/tokens (BILLING+) -------------------------------------------------------------------------


class ApiTokenViewSet(ResourceViewSet):
    """Personal API tokens in this tenant. BILLING+ manage their own; ADMIN+ see and revoke everyone's.
    The secret is answered once, at creation; DELETE revokes."""

    queryset = ApiToken.objects.select_related("user")
    serializer_class = ApiTokenSerializer
    input_serializers = {"create": ApiTokenCreateSerializer}
    output_serializers = {"create": ApiTokenCreatedSerializer}
    destroy_answers_object = False
    filterset_fields = ["max_role"]
    search_fields = ["name", "prefix"]
    ordering_fields = ["created_at", "last_used_at", "expires_at", "name"]
    ordering = ["-created_at"]
    idempotency_secret_fields = ("token",)
    required_roles = {
        "list": Role.BILLING,
        "retrieve": Role.BILLING,
        "create": Role.BILLING,
        "destroy": Role.BILLING,
    }

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action == "create" and isinstance(request.auth, ApiToken):
            # Otherwise a short-lived or IP-bound token could mint an unbounded one (refused before
            # the body is read).
            raise Forbidden("API tokens are created from a signed-in session, not with another token.")

    def scope_queryset(self, queryset):
        if not self.tenant_role.includes(Role.ADMIN):
            queryset = queryset.filter(user=self.request.user)
        return queryset

    def create_resource(self, data):
        token, raw = services.token_create(
            tenant=self.tenant, actor=self.request.user, actor_role=self.tenant_role, **data
        )
        token.token = raw
        return token

    def destroy_resource(self, obj):
        services.token_revoke(token=obj, actor=self.request.user)


# --- /security/events and /security/policy (ADMIN+) ------------------------------------------------------


class SecurityEventViewSet(TenantReadOnlyViewSet):
    """The tenant's security events (its members' logins, 2FA, tokens, policy, roles), newest first."""

    queryset = SecurityEvent.objects.all()
    serializer_class = SecurityEventSerializer
    filterset_class = SecurityEventFilter
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    required_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN}


class SecurityPolicyViewSet(ResourceViewSet):
    """The tenant's security policy: `GET` and `PUT /security/policy` (ADMIN+). Fields left out of a
    PUT keep their value; every field sent is validated (a bad CIDR is a 400)."""

    serializer_class = SecurityPolicySerializer
    queryset = SecurityPolicy.objects.all()  # one object per tenant, addressed without an id
    input_serializers = {"update": SecurityPolicySerializer}
    required_roles = {"retrieve": Role.ADMIN, "update": Role.ADMIN}

    @extend_schema(responses={200: SecurityPolicySerializer})
    def retrieve(self, request, *args, **kwargs):
        return self.answer(services.policy_for(self.tenant))

    # Addressed without an id, so not the base's update (which reads the row by its id).
    @extend_schema(request=SecurityPolicySerializer, responses={200: SecurityPolicySerializer})
    def update(self, request, *args, **kwargs):
        data = self.validated(partial=True)
        return self.answer(services.policy_update(tenant=self.tenant, actor=request.user, data=data))


# --- /security/shield/* (ADMIN+) -------------------------------------------------------------------------


class ShieldPolicyViewSet(ResourceViewSet):
    """Web application firewall policies: one tenant-wide (`site` empty) and one per website at most.
    `GET /{id}/nginx/` answers the nginx configuration it renders to."""

    queryset = ShieldPolicy.objects.all()
    serializer_class = ShieldPolicySerializer
    input_serializers = {"create": ShieldPolicySerializer, "update": ShieldPolicySerializer}
    destroy_answers_object = False
    filterset_fields = ["site", "enabled", "maintenance_mode"]
    ordering_fields = ["site", "created_at"]
    ordering = ["site"]
    required_roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
        "nginx": Role.ADMIN,
    }

    def create_resource(self, data):
        return services.shield_policy_create(tenant=self.tenant, data=data)

    def update_resource(self, obj, data):
        return services.shield_policy_update(policy=obj, data=data)

    def destroy_resource(self, obj):
        services.shield_policy_delete(policy=obj)

    @extend_schema(responses={200: ShieldNginxSerializer}, summary="The nginx configuration this policy renders to")
    @action(detail=True, methods=["get"])
    def nginx(self, request, pk=None):
        policy = self.get_object()
        rendered = {"http": shield.render_http(policy), "server": shield.render_server(policy)}
        return self.answer(rendered, serializer=ShieldNginxSerializer)


class ShieldEventViewSet(ResourceViewSet):
    """Requests the shield blocked: list, and `GET counts/` per rule. The nodes report them with
    their signed metrics batch (`/hosting/server-metrics/ingest`, `shield`); `POST ingest/` is an
    ADMIN+'s import into their own tenant."""

    queryset = ShieldEvent.objects.all()
    serializer_class = ShieldEventSerializer
    input_serializers = {"ingest": ShieldIngestSerializer}
    filterset_class = ShieldEventFilter
    ordering_fields = ["occurred_at"]
    ordering = ["-occurred_at"]
    required_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN, "ingest": Role.ADMIN, "counts": Role.ADMIN}

    @extend_schema(request=ShieldIngestSerializer, responses={201: ShieldIngestedSerializer})
    @action(detail=False, methods=["post"])
    def ingest(self, request):
        count = services.shield_events_ingest(tenant=self.tenant, events=self.validated()["events"])
        return self.answer({"ingested": count}, status.HTTP_201_CREATED, serializer=ShieldIngestedSerializer)

    @extend_schema(responses={200: ShieldRuleCountSerializer(many=True)}, summary="Blocked requests per rule")
    @action(detail=False, methods=["get"])
    def counts(self, request):
        queryset = self.filter_queryset(self.get_queryset())
        return self.answer(shield.shield_event_counts(queryset), many=True, serializer=ShieldRuleCountSerializer)


# --- /guardian (MEMBER+ read, ADMIN+ scan and resolve) ------------------------------------------------------


class GuardianViewSet(ResourceViewSet):
    """Guardian findings. `POST scan/` runs every check as a job; `POST {id}/acknowledge/` and
    `POST {id}/resolve/` change a finding's status; `GET checks/` lists the registered checks."""

    queryset = GuardianFinding.objects.all()
    serializer_class = GuardianFindingSerializer
    filterset_class = GuardianFindingFilter
    ordering_fields = ["last_seen_at", "first_seen_at", "severity"]
    ordering = ["-last_seen_at"]
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "checks": Role.MEMBER,
        "scan": Role.ADMIN,
        "acknowledge": Role.ADMIN,
        "resolve": Role.ADMIN,
    }

    @extend_schema(responses={200: GuardianCheckSerializer(many=True)}, summary="Registered checks")
    # The findings' filters and pages are not this list's.
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def checks(self, request):
        rows = guardian.checks_overview(tenant=self.tenant)
        return self.answer(rows, many=True, serializer=GuardianCheckSerializer)

    @extend_schema(request=None, responses={202: GuardianScanSerializer}, summary="Run every check (as a job)")
    @action(detail=False, methods=["post"])
    def scan(self, request):
        job = guardian.scan_enqueue(tenant=self.tenant, actor=request.user)
        job.refresh_from_db()
        return self.answer(
            {"job": job.pk, "status": job.status}, status.HTTP_202_ACCEPTED, serializer=GuardianScanSerializer
        )

    @extend_schema(request=None, responses={200: GuardianFindingSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return self.answer(guardian.finding_set_status(finding=self.get_object(), status=FindingStatus.ACKNOWLEDGED))

    @extend_schema(request=None, responses={200: GuardianFindingSerializer})
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        return self.answer(guardian.finding_set_status(finding=self.get_object(), status=FindingStatus.RESOLVED))
