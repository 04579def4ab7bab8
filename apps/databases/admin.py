from django import forms
from django.contrib import admin
from django.db import transaction

from apps.common.admin import ReadOnlyAdmin
from apps.tenancy.admin_base import TenantOwnedAdmin, TenantOwnedForm

from . import crypto, services
from .models import Database, DatabaseGrant, DatabaseServer, DatabaseUser


class DatabaseServerForm(TenantOwnedForm):
    """The admin password is write-only: empty on a change keeps the stored one."""

    admin_password = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False, strip=False)

    class Meta:
        model = DatabaseServer
        fields = ["tenant", "node", "engine", "host", "port", "admin_user"]

    def clean(self):
        data = super().clean()
        node = data.get("node")
        if node is not None and "db" not in (node.roles or []):
            self.add_error("node", "This node does not have the db role.")
        password = data.get("admin_password")
        if password:
            self.instance.admin_password_encrypted = crypto.encrypt(password)
        elif not self.instance.admin_password_encrypted:
            self.add_error("admin_password", "The admin password is required.")
        return data


@admin.register(DatabaseServer)
class DatabaseServerAdmin(TenantOwnedAdmin):
    """Operators register servers here too; each save checks the connection again (a job)."""

    form = DatabaseServerForm
    list_display = ["__str__", "node", "admin_user", "status", "version"]
    list_filter = ["engine", "status"]
    search_fields = ["host", "id"]
    list_select_related = ["node"]
    readonly_fields = ["status", "version", "last_error"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        fixed = ["tenant", "engine"] if obj is not None else []
        return [*self.readonly_fields, *fixed]

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            services.check_job(obj, request.user)


@admin.register(Database)
class DatabaseAdmin(ReadOnlyAdmin):
    """Read-only: changes are jobs on the server, made through the API's services."""

    list_display = ["full_name", "name", "server", "status", "size_bytes", "tenant"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "full_name", "id"]
    list_select_related = ["server", "tenant"]
    show_full_result_count = False


@admin.register(DatabaseUser)
class DatabaseUserAdmin(ReadOnlyAdmin):
    list_display = ["full_name", "name", "server", "status", "password_changed_at", "tenant"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "full_name", "id"]
    list_select_related = ["server", "tenant"]
    exclude = ["password_verifier"]
    show_full_result_count = False


@admin.register(DatabaseGrant)
class DatabaseGrantAdmin(ReadOnlyAdmin):
    list_display = ["user", "database", "status", "tenant"]
    list_filter = ["status", "tenant"]
    search_fields = ["user__full_name", "database__full_name"]
    list_select_related = ["user", "database", "tenant"]
    show_full_result_count = False
