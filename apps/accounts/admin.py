from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from apps.common.admin import AuditedModelAdmin, ReadOnlyAdmin
from apps.tenancy.models import Membership

from .models import AuthToken, User


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["tenant", "role", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["tenant"]


@admin.register(User)
class UserAdmin(AuditedModelAdmin, DjangoUserAdmin):
    audit_fields = ["email", "full_name", "is_active", "is_staff", "is_superuser"]
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "last_login", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active", "groups"]
    search_fields = ["email", "full_name"]
    readonly_fields = ["last_login", "date_joined", "password_changed_at"]
    inlines = [MembershipInline]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name",)}),
        ("Operator permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined", "password_changed_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(AuthToken)
class AuthTokenAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "user", "created_at", "expires_at", "last_used_at", "revoked_at", "ip"]
    list_filter = ["revoked_at", "created_at"]
    search_fields = ["user__email", "prefix", "ip"]
    list_select_related = ["user"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected sessions")
    def revoke(self, request, queryset):
        from django.utils import timezone

        from apps.audit import services as audit

        for token in queryset.filter(revoked_at__isnull=True):
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            audit.record(action="auth.session_revoke", obj=token, tenant=None, actor=request.user)
        self.message_user(request, "Revoked.")

    def has_change_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        # ReadOnlyAdmin denies delete, which would hide all actions; revoking is the one allowed change.
        actions = super().get_actions(request)
        return {k: v for k, v in actions.items() if k == "revoke"}
