from django import forms
from django.contrib import admin, messages
from django.db import transaction

from apps.audit.admin_base import AuditedModelAdmin
from apps.common.admin import confirm_first
from apps.common.display import badge
from apps.common.exceptions import DomainError
from apps.common.money import CURRENCY_CHOICES

from . import services
from .models import Invitation, Membership, Tenant
from .roles import Role
from .signals import member_removed


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["user"]


class TenantAdminForm(forms.ModelForm):
    default_currency = forms.ChoiceField(choices=[(c, c) for c in CURRENCY_CHOICES], initial="USD")

    class Meta:
        model = Tenant
        fields = ["name", "slug", "status", "default_currency", "country"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "slug" in self.fields:
            self.fields["slug"].required = False
            self.fields["slug"].help_text = "Made from the name when left blank; fixed once the tenant exists."

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("This field may not be blank.")
        return name


@admin.register(Tenant)
class TenantAdmin(AuditedModelAdmin):
    form = TenantAdminForm
    audit_fields = ["name", "slug", "status", "default_currency", "country"]
    list_display = ["name", "slug", "status_badge", "default_currency", "country", "created_at"]
    list_filter = ["status", "default_currency", "created_at"]
    search_fields = ["name", "slug", "id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    inlines = [MembershipInline]

    @admin.display(description="status", ordering="status")
    def status_badge(self, tenant):
        return badge(tenant.status, tenant.get_status_display())

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "slug"] if obj is not None else fields

    def save_formset(self, request, form, formset, change):
        if formset.model is Membership:
            # A membership removed on the tenant's page ends what the member held there, as everywhere.
            for inline_form in formset.deleted_forms:
                if inline_form.instance.pk is not None:
                    member_removed.send(sender=Membership, membership=inline_form.instance, actor=request.user)
        super().save_formset(request, form, formset, change)


@admin.register(Membership)
class MembershipAdmin(AuditedModelAdmin):
    """A user's role in a tenant. Who and where are fixed once created; only the role changes."""

    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant", "created_at"]
    search_fields = ["user__email", "user__full_name", "tenant__name", "tenant__slug"]
    list_select_related = ["user", "tenant"]
    autocomplete_fields = ["user", "tenant"]
    readonly_fields = ["created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "tenant", "user"] if obj is not None else fields

    # An operator removing a member ends what the member held in the tenant, as the API's removal does.
    def delete_model(self, request, obj):
        with transaction.atomic():
            member_removed.send(sender=Membership, membership=obj, actor=request.user)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for membership in queryset:
                member_removed.send(sender=Membership, membership=membership, actor=request.user)
            super().delete_queryset(request, queryset)


@admin.register(Invitation)
class InvitationAdmin(AuditedModelAdmin):
    """Invitations are issued by a tenant's admins through the API, which emails the secret token
    (only its hash is stored), so none can be added here. Operators can extend or revoke one."""

    list_display = ["email", "tenant", "role", "state", "invited_by", "created_at", "expires_at"]
    list_filter = ["role", "tenant", "accepted_at", "declined_at", "revoked_at", "expires_at"]
    search_fields = ["email", "tenant__name", "invited_by__email"]
    list_select_related = ["tenant", "invited_by"]
    fields = [
        "tenant",
        "email",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "declined_at",
        "revoked_at",
    ]
    readonly_fields = ["tenant", "email", "invited_by", "created_at", "accepted_at", "declined_at", "revoked_at"]
    actions = ["revoke_invitations"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="state")
    def state(self, invitation):
        word = "open" if invitation.is_open else invitation.status
        return badge(word)

    @admin.action(description="Revoke the selected open invitations", permissions=["change"])
    @confirm_first
    def revoke_invitations(self, request, queryset):
        done = 0
        for invitation in queryset.select_related("tenant"):
            try:
                # An operator acts with an owner's powers.
                services.invitation_revoke(invitation=invitation, actor_role=Role.OWNER)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{invitation}: {exc.message}", messages.WARNING)
        if done:
            self.message_user(request, f"Revoked {done} invitation(s).", messages.SUCCESS)
