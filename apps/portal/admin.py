"""Operators' screens of the portal: a customer's portal users (invite, change, remove, resend the
invitation) and each tenant's portal settings. Every save is the API's service call."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from apps.common.admin import ObjectAction, ReadOnlyAdmin, ServiceFormMixin
from apps.tenancy.scoping import tenant_scope

from . import services
from .models import PortalSettings, PortalUser


class PortalUserForm(forms.ModelForm):
    class Meta:
        model = PortalUser
        fields = ["customer", "email", "name", "role", "is_active"]


@admin.register(PortalUser)
class PortalUserAdmin(ServiceFormMixin, ReadOnlyAdmin):
    """Added here = invited (an email with a link to set the password); changes and removal go through
    the same services as the API (a customer keeps one active owner)."""

    form = PortalUserForm
    list_display = ["email", "name", "role", "customer", "is_active", "last_login_at", "tenant"]
    list_filter = ["role", "is_active", "tenant"]
    search_fields = ["email", "name", "customer__name", "customer__email"]
    list_select_related = ["customer", "tenant"]
    autocomplete_fields = ["customer"]
    object_actions = [
        ObjectAction("resend", "Send the invitation again", method="resend_one", show=lambda u: not u.has_password),
    ]

    def object_action_scope(self, obj):
        return tenant_scope(obj.tenant)

    def has_add_permission(self, request):
        return admin.ModelAdmin.has_add_permission(self, request)

    def has_change_permission(self, request, obj=None):
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def has_delete_permission(self, request, obj=None):
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def get_readonly_fields(self, request, obj=None):
        return ["customer", "email"] if obj is not None else []

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def service_save(self, request, form, formsets, change):
        data = form.cleaned_data
        if change:
            user = form.instance
            with tenant_scope(user.tenant):
                values = {k: data[k] for k in ("name", "role", "is_active") if k in data}
                return services.portal_user_update(user=user, data=values, actor=request.user)
        customer = data["customer"]
        with tenant_scope(customer.tenant):
            return services.portal_user_invite(
                customer=customer, email=data["email"], role=data["role"], name=data.get("name", ""), actor=request.user
            )

    def delete_model(self, request, obj):
        with tenant_scope(obj.tenant):
            services.portal_user_remove(user=obj, actor=request.user)

    def resend_one(self, request, user, data):
        services.portal_user_resend(user=user, actor=request.user)
        return f"The invitation is sent again to {user.email}."


class PortalSettingsForm(forms.ModelForm):
    class Meta:
        model = PortalSettings
        fields = ["tenant", "allow_signup", "require_2fa"]


@admin.register(PortalSettings)
class PortalSettingsAdmin(ServiceFormMixin, ReadOnlyAdmin):
    form = PortalSettingsForm
    list_display = ["tenant", "allow_signup", "require_2fa"]
    list_select_related = ["tenant"]

    def has_add_permission(self, request):
        return admin.ModelAdmin.has_add_permission(self, request)

    def has_change_permission(self, request, obj=None):
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def get_readonly_fields(self, request, obj=None):
        return ["tenant"] if obj is not None else []

    def service_save(self, request, form, formsets, change):
        data = form.cleaned_data
        tenant = form.instance.tenant if change else data["tenant"]
        return services.settings_update(
            tenant=tenant, allow_signup=data["allow_signup"], require_2fa=data["require_2fa"]
        )
