"""Hosting databases in the operators' console: servers registered, databases created and dropped,
users created (their password shown once) and rotated, grants given and revoked: every write
through the same services as the API (names prefixed per tenant, jobs on the server, audit)."""

from django import forms
from django.contrib import admin

from apps.common.admin import ObjectAction
from apps.common.display import when
from apps.jobs.admin import ServiceAdmin, ServiceForm, retry_action, shown_once, tenant_from
from apps.nodes.admin_base import NodeChoiceMixin

from . import services
from .models import Database, DatabaseGrant, DatabaseServer, DatabaseUser, ObjectStatus

GONE = (ObjectStatus.REMOVING,)  # the job that drops it then removes the row


def tenant_servers(request, form, field: str = "server") -> None:
    if field in form.base_fields:
        tenant = tenant_from(request)
        servers = DatabaseServer.all_tenants.select_related("tenant")
        form.base_fields[field].queryset = servers.filter(tenant=tenant) if tenant is not None else servers


# --- servers -------------------------------------------------------------------------------------------


class ServerForm(ServiceForm):
    """The admin password is write-only: empty on a change keeps the stored one."""

    admin_password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        strip=False,
        help_text="Stored encrypted; never shown again. Empty keeps the current one.",
    )

    class Meta:
        model = DatabaseServer
        fields = ["host", "port", "admin_user"]

    def act(self, data, actor):
        changes = self.changed(data, ["host", "port", "admin_user"])
        if data.get("admin_password"):
            changes["admin_password"] = data["admin_password"]
        return services.server_update(server=self.instance, data=changes, actor=actor) if changes else self.instance


class ServerAddForm(ServerForm):
    admin_password = forms.CharField(
        widget=forms.PasswordInput(render_value=False), strip=False, help_text="Stored encrypted; never shown again."
    )

    class Meta:
        model = DatabaseServer
        fields = ["tenant", "node", "engine", "host", "port", "admin_user"]

    def act(self, data, actor):
        return services.server_create(
            tenant=data["tenant"],
            node=data["node"],
            engine=data["engine"],
            host=data["host"],
            port=data["port"],
            admin_user=data["admin_user"],
            admin_password=data["admin_password"],
            actor=actor,
        )


@admin.register(DatabaseServer)
class DatabaseServerAdmin(NodeChoiceMixin, ServiceAdmin):
    """Operators register servers here too; each save checks the connection again (a job)."""

    node_role = "db"

    list_display = ["__str__", "node", "admin_user", "status", "version", "tenant"]
    list_filter = ["engine", "status", "tenant"]
    search_fields = ["host", "id"]
    list_select_related = ["node", "tenant"]
    show_full_result_count = False
    add_form = ServerAddForm
    form = ServerForm
    add_fields = ["tenant", "node", "engine", "host", "port", "admin_user", "admin_password"]
    change_fields = ["host", "port", "admin_user", "admin_password"]
    shown_fields = ["tenant", "node", "engine", "status", "version", "last_error"]
    object_actions = [
        ObjectAction(
            "check",
            "Check the connection",
            method="check_one",
            help="Connect as the admin again and read the version (a job).",
        ),
        ObjectAction(
            "delete",
            "Delete",
            method="delete_one",
            confirm=True,
            style="danger",
            help="Forget this server (only once its databases and users are gone).",
        ),
    ]

    def check_one(self, request, server, data):
        services.check_job(server, request.user)
        return f"Checking {server}: a job connects as the admin."

    def delete_one(self, request, server, data):
        services.server_delete(server=server, actor=request.user)
        return self.gone_to_list(request, server, f"Forgot the server {server}.")


# --- databases -----------------------------------------------------------------------------------------


class DatabaseAddForm(ServiceForm):
    class Meta:
        model = Database
        fields = ["tenant", "server", "name"]

    def act(self, data, actor):
        return services.database_create(tenant=data["tenant"], server=data["server"], name=data["name"], actor=actor)


class DropForm(forms.Form):
    confirm = forms.CharField(help_text="Dropping is irreversible: type the database's name to confirm.")


@admin.register(Database)
class DatabaseAdmin(ServiceAdmin):
    list_display = ["full_name", "name", "server", "status", "size_bytes", "tenant"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "full_name", "id"]
    list_select_related = ["server", "tenant"]
    show_full_result_count = False
    add_form = DatabaseAddForm
    add_fields = ["tenant", "server", "name"]
    shown_fields = ["tenant", "server", "name", "full_name", "status", "size_bytes", "last_error", "created"]
    object_actions = [
        retry_action,
        ObjectAction(
            "drop",
            "Drop",
            method="drop_one",
            form=DropForm,
            style="danger",
            show=lambda d: d.status not in GONE,
            help="Drop the database on its server: its data is gone for good.",
        ),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        tenant_servers(request, form)
        return form

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    def drop_one(self, request, database, data):
        services.database_drop(database=database, confirm=data["confirm"], actor=request.user)
        return f"Dropping {database.full_name}: a job drops it on the server."


# --- users ---------------------------------------------------------------------------------------------


class UserAddForm(ServiceForm):
    class Meta:
        model = DatabaseUser
        fields = ["tenant", "server", "name"]

    def act(self, data, actor):
        user, password = services.user_create(
            tenant=data["tenant"], server=data["server"], name=data["name"], actor=actor
        )
        self.extra["password"] = password
        return user


def password_page(admin_, request, user, password: str):
    return shown_once(
        admin_,
        request,
        user,
        title="The user's password",
        explanation=f"Log in to {user.server} as {user.full_name} with this password.",
        values=[("User", user.full_name), ("Password", password)],
    )


@admin.register(DatabaseUser)
class DatabaseUserAdmin(ServiceAdmin):
    list_display = ["full_name", "name", "server", "status", "password_changed", "tenant"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "full_name", "id"]
    list_select_related = ["server", "tenant"]
    show_full_result_count = False
    add_form = UserAddForm
    add_fields = ["tenant", "server", "name"]
    shown_fields = ["tenant", "server", "name", "full_name", "status", "password_changed", "last_error"]
    object_actions = [
        ObjectAction(
            "rotate_password",
            "Rotate the password",
            method="rotate_one",
            confirm=True,
            show=lambda u: u.status not in GONE,
            help="A new password replaces the current one at once; it is shown this once.",
        ),
        retry_action,
        ObjectAction(
            "delete",
            "Delete",
            method="delete_one",
            confirm=True,
            style="danger",
            show=lambda u: u.status not in GONE,
            help="Drop the login on its server (in PostgreSQL what it owns goes to the admin).",
        ),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        tenant_servers(request, form)
        return form

    def after_add(self, request, obj, extra):
        return password_page(self, request, obj, extra["password"]) if extra.get("password") else None

    @admin.display(description="password changed", ordering="password_changed_at")
    def password_changed(self, obj):
        return when(obj.password_changed_at)

    def rotate_one(self, request, user, data):
        user, password = services.user_rotate_password(user=user, actor=request.user)
        return password_page(self, request, user, password)

    def delete_one(self, request, user, data):
        services.user_delete(user=user, actor=request.user)
        return f"Removing {user.full_name}: a job drops the login."


# --- grants --------------------------------------------------------------------------------------------


class GrantAddForm(ServiceForm):
    class Meta:
        model = DatabaseGrant
        fields = ["database", "user"]

    def tenant_for(self, data):
        return getattr(data.get("database"), "tenant", None)

    def act(self, data, actor):
        return services.grant_create(database=data["database"], user=data["user"], actor=actor)


@admin.register(DatabaseGrant)
class DatabaseGrantAdmin(ServiceAdmin):
    list_display = ["user", "database", "status", "tenant"]
    list_filter = ["status", "tenant"]
    search_fields = ["user__full_name", "database__full_name"]
    list_select_related = ["user", "database", "tenant"]
    show_full_result_count = False
    add_form = GrantAddForm
    add_fields = ["database", "user"]
    shown_fields = ["tenant", "database", "user", "status", "last_error"]
    object_actions = [
        retry_action,
        ObjectAction(
            "revoke",
            "Revoke",
            method="revoke_one",
            confirm=True,
            style="danger",
            show=lambda g: g.status not in GONE,
            help="The user loses its privileges on the database.",
        ),
    ]

    def revoke_one(self, request, grant, data):
        services.grant_revoke(grant=grant, actor=request.user)
        return f"Revoking {grant}: a job takes the privileges back."
