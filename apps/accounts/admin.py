from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction

from apps.audit import services as audit
from apps.audit.admin_base import AuditedModelAdmin
from apps.common.admin import ReadOnlyAdmin, confirm_first
from apps.tenancy.models import Membership

from . import services
from .models import AuthToken, User


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["tenant", "role", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["tenant"]


@admin.register(User)
class UserAdmin(AuditedModelAdmin, DjangoUserAdmin):
    audit_fields = [*User.audit_fields, "groups", "user_permissions"]
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_superuser", "is_active", "last_login", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active", "groups", "date_joined"]
    search_fields = ["email", "full_name", "id"]
    readonly_fields = ["id", "last_login", "date_joined", "password_changed_at"]
    inlines = [MembershipInline]
    fieldsets = (
        (None, {"fields": ("id", "email", "password")}),
        ("Profile", {"fields": ("full_name",)}),
        ("Operator permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined", "password_changed_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    def user_change_password(self, request, id, form_url=""):
        """Django's set-password page, audited (that something changed, never the secret)."""
        if request.method != "POST":
            return super().user_change_password(request, id, form_url)
        with transaction.atomic():
            before = User.objects.filter(pk=unquote(id)).values_list("password", flat=True).first()
            response = super().user_change_password(request, id, form_url)
            user = User.objects.filter(pk=unquote(id)).first()
            if user is not None and before is not None and user.password != before:
                audit.record(
                    action="user.password_change",
                    obj=user,
                    tenant=None,
                    actor=request.user,
                    changes={"usable_password": [True, user.has_usable_password()]}
                    if not user.has_usable_password()
                    else {},
                )
        return response


@admin.register(AuthToken)
class AuthTokenAdmin(ReadOnlyAdmin):
    """Sign-in sessions. Only the hash of the secret is stored and it is never shown."""

    list_display = ["prefix", "user", "created_at", "expires_at", "last_used_at", "revoked_at", "ip"]
    list_filter = ["revoked_at", "expires_at", "created_at"]
    search_fields = ["user__email", "prefix", "ip"]
    list_select_related = ["user"]
    exclude = ["key_hash"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["revoke"]

    @admin.action(description="Revoke the selected sessions", permissions=["operate"])
    @confirm_first
    def revoke(self, request, queryset):
        done = services.sessions_revoke(queryset, actor=request.user)
        self.message_user(request, f"Revoked {done} session(s).", messages.SUCCESS if done else messages.INFO)

    def get_actions(self, request):
        # ReadOnlyAdmin denies delete, which drops "delete_selected"; revoking is the one allowed change.
        actions = super().get_actions(request)
        return {k: v for k, v in actions.items() if k == "revoke"}
