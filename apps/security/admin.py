from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite

from apps.audit.admin_base import AuditedModelAdmin
from apps.common.admin import ReadOnlyAdmin, confirm_first
from apps.common.display import badge

from . import mfa, services
from .events import record_event
from .models import (
    ApiToken,
    EventType,
    GuardianCheckRun,
    GuardianFinding,
    SecurityEvent,
    SecurityPolicy,
    ShieldEvent,
    ShieldPolicy,
)

NO_DEVICE = "This account has no authenticator app yet: set one up with the link below, then log in with its code."


class AdminLoginForm(OTPAdminAuthenticationForm):
    """django-otp's admin login form; a wrong second factor is a security event too.

    An operator with one confirmed device logs in with one submit (e-mail, password, code): that
    device is the one chosen. With several, django-otp asks which one, as it does by default."""

    def _chosen_device(self, user):
        return super()._chosen_device(user) or mfa.only_device(user, for_verify=True)

    def clean_otp(self, user):
        if user is not None and not mfa.has_2fa(user):
            # Not django-otp's "Please select a device." over an empty list: the way in is the set-up page.
            raise ValidationError(NO_DEVICE, code="no_device")
        try:
            return super().clean_otp(user)
        except ValidationError:
            if user is not None and self.data.get("otp_token"):
                record_event(
                    EventType.LOGIN_FAILURE, user=user, actor=None, reason="bad_2fa_code", data={"via": "admin"}
                )
            raise


class MpanelOTPAdminSite(OTPAdminSite):
    login_form = AdminLoginForm
    login_template = "admin/security/login.html"  # links to the set-up page (apps/security/enrol.py)


if getattr(settings, "MPANEL_ADMIN_REQUIRE_2FA", True):
    # Operators' console needs a verified TOTP device (django-otp): the login form asks for the code,
    # and a session without a verified device is treated as not staff. See docs/modules/security-center.md.
    admin.site.__class__ = MpanelOTPAdminSite


@admin.register(SecurityEvent)
class SecurityEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "type", "reason", "email", "tenant", "ip"]
    list_filter = ["type", "created_at"]
    search_fields = ["email", "ip", "request_id", "id"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(SecurityPolicy)
class SecurityPolicyAdmin(AuditedModelAdmin):
    list_display = ["tenant", "require_2fa", "min_password_length", "token_max_lifetime_days", "updated_at"]
    list_filter = ["require_2fa"]
    search_fields = ["tenant__name", "tenant__slug"]
    list_select_related = ["tenant"]
    autocomplete_fields = ["tenant"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Personal API tokens. Only the hash of the secret is stored and it is never shown."""

    list_display = ["name", "prefix", "user", "tenant", "max_role", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["max_role", "revoked_at", "created_at"]
    search_fields = ["name", "prefix", "user__email", "tenant__name"]
    list_select_related = ["user", "tenant"]
    exclude = ["key_hash"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens", permissions=["operate"])
    @confirm_first
    def revoke(self, request, queryset):
        done = 0
        with transaction.atomic():
            for token in queryset.filter(revoked_at__isnull=True):
                services.token_revoke(token=token, actor=request.user)
                done += 1
        self.message_user(request, f"Revoked {done} token(s).", messages.SUCCESS if done else messages.INFO)

    def get_actions(self, request):
        actions = super().get_actions(request)
        return {k: v for k, v in actions.items() if k == "revoke"}


@admin.register(ShieldPolicy)
class ShieldPolicyAdmin(AuditedModelAdmin):
    """Edits here skip the API's validation of CIDRs, user agents and paths, so they are read-only:
    operators change a tenant's shield through the API (or its services)."""

    list_display = ["tenant", "site", "enabled", "rate_limit_per_second", "maintenance_mode", "updated_at"]
    list_filter = ["enabled", "maintenance_mode"]
    search_fields = ["site", "tenant__name"]
    list_select_related = ["tenant"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ShieldEvent)
class ShieldEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "tenant", "rule", "site", "ip", "path"]
    list_filter = ["rule", "occurred_at"]
    search_fields = ["site", "ip", "path", "tenant__name"]
    list_select_related = ["tenant"]
    show_full_result_count = False


@admin.register(GuardianFinding)
class GuardianFindingAdmin(ReadOnlyAdmin):
    list_display = ["check_name", "severity_badge", "status_badge", "tenant", "resource_repr", "last_seen_at"]
    list_filter = ["status", "severity", "check_name"]
    search_fields = ["resource_repr", "resource_id", "tenant__name"]
    list_select_related = ["tenant"]

    # A badge's colour comes from its word (apps.common.display.TONES): each severity and state
    # is shown with the word of the tone it deserves.
    SEVERITY_TONE = {"critical": "critical", "high": "error", "medium": "warning", "low": "neutral"}
    STATUS_TONE = {"open": "open", "acknowledged": "neutral", "resolved": "ok"}

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, finding):
        return badge(self.SEVERITY_TONE.get(finding.severity, finding.severity), finding.get_severity_display())

    @admin.display(description="status", ordering="status")
    def status_badge(self, finding):
        return badge(self.STATUS_TONE.get(finding.status, finding.status), finding.get_status_display())


@admin.register(GuardianCheckRun)
class GuardianCheckRunAdmin(ReadOnlyAdmin):
    list_display = ["check_name", "tenant", "ran_at", "ok", "hits", "unknown"]
    list_filter = ["ok", "check_name"]
    search_fields = ["check_name", "tenant__name"]
    list_select_related = ["tenant"]
