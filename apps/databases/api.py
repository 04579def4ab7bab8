"""/api/v1/hosting/databases: database servers, databases, users and grants.

Roles: servers (the panel's admin access to a database server) ADMIN+ for everything; databases,
users and grants are read by MEMBER+ and changed by ADMIN+ (they change a server). Dropping a
database also asks for its name in ``confirm``. A user's password is answered once, by create
and by ``rotate-password``; the admin password of a server is write-only.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from apps.common.serializers import ModelSerializer, Serializer
from apps.nodes.models import Node
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantModelViewSet

from . import services
from .models import Database, DatabaseGrant, DatabaseServer, DatabaseUser, Engine

READ_MEMBER = {
    "list": Role.MEMBER,
    "retrieve": Role.MEMBER,
    "create": Role.ADMIN,
    "destroy": Role.ADMIN,
}


class _AdminDetails:
    """``last_error`` quotes the server (its address, the admin's name): ADMIN+ only, like servers."""

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        role = getattr(request, "tenant_role", None)
        if request is not None and not (role and Role(role).includes(Role.ADMIN)):
            data.pop("last_error", None)
        return data


class DatabaseServerSerializer(ModelSerializer):
    node = serializers.PrimaryKeyRelatedField(queryset=Node.objects)
    engine = serializers.ChoiceField(choices=Engine.choices)
    host = serializers.CharField(max_length=255)
    port = serializers.IntegerField(min_value=1, max_value=65535)
    admin_user = serializers.CharField(max_length=80)
    admin_password = serializers.CharField(write_only=True, max_length=1024, trim_whitespace=False)

    class Meta:
        model = DatabaseServer
        fields = ["id", "node", "engine", "host", "port", "admin_user", "admin_password", "status", "version",
                  "last_error", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["status", "version", "last_error", "created_at", "updated_at"]


class DatabaseServerUpdateSerializer(Serializer):
    host = serializers.CharField(max_length=255, required=False)
    port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
    admin_user = serializers.CharField(max_length=80, required=False)
    admin_password = serializers.CharField(write_only=True, max_length=1024, trim_whitespace=False, required=False)


class DatabaseSerializer(_AdminDetails, ModelSerializer):
    server = serializers.PrimaryKeyRelatedField(queryset=DatabaseServer.objects)
    name = serializers.CharField(max_length=63)
    engine = serializers.CharField(source="server.engine", read_only=True)
    users = serializers.SerializerMethodField()

    class Meta:
        model = Database
        fields = ["id", "server", "engine", "name", "full_name", "status", "size_bytes", "size_updated_at", "users",
                  "last_error", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["full_name", "status", "size_bytes", "size_updated_at", "last_error", "created_at",
                            "updated_at"]  # fmt: skip

    def get_users(self, obj) -> list[str]:
        """Users granted on this database (ids; from the prefetched grants)."""
        return [str(g.user_id) for g in obj.grants.all()]


class DropSerializer(Serializer):
    confirm = serializers.CharField(help_text="The database's name, repeated: dropping is irreversible.")


class DatabaseUserSerializer(_AdminDetails, ModelSerializer):
    server = serializers.PrimaryKeyRelatedField(queryset=DatabaseServer.objects)
    name = serializers.CharField(max_length=63)
    engine = serializers.CharField(source="server.engine", read_only=True)

    class Meta:
        model = DatabaseUser
        fields = ["id", "server", "engine", "name", "full_name", "status", "password_changed_at", "last_error",
                  "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["full_name", "status", "password_changed_at", "last_error", "created_at", "updated_at"]


class DatabaseUserWithPasswordSerializer(DatabaseUserSerializer):
    password = serializers.SerializerMethodField(
        help_text="Shown this once; the panel does not keep it (null on an Idempotency-Key replay)."
    )

    class Meta(DatabaseUserSerializer.Meta):
        fields = [*DatabaseUserSerializer.Meta.fields, "password"]

    def get_password(self, obj) -> str | None:
        return self.context["password"]


class DatabaseGrantSerializer(_AdminDetails, ModelSerializer):
    user = serializers.PrimaryKeyRelatedField(queryset=DatabaseUser.objects)

    class Meta:
        model = DatabaseGrant
        fields = ["id", "database", "user", "status", "last_error", "created_at", "updated_at"]
        read_only_fields = ["database", "status", "last_error", "created_at", "updated_at"]


class DatabaseServerViewSet(TenantModelViewSet):
    """Database servers a node of the tenant acts on (the panel's admin access to them)."""

    queryset = DatabaseServer.objects.select_related("node")
    serializer_class = DatabaseServerSerializer
    filterset_fields = ["engine", "node", "status"]
    search_fields = ["host"]
    ordering_fields = ["engine", "host", "port", "created_at"]
    ordering = ["engine", "host", "port"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    required_roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return DatabaseServerUpdateSerializer
        return DatabaseServerSerializer

    def perform_create(self, serializer):
        serializer.instance = services.server_create(tenant=self.tenant, actor=self.request.user,
                                                     **serializer.validated_data)  # fmt: skip

    @extend_schema(request=DatabaseServerUpdateSerializer, responses={200: DatabaseServerSerializer})
    def update(self, request, *args, **kwargs):
        serializer = DatabaseServerUpdateSerializer(data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        server = services.server_update(server=self.get_object(), data=serializer.validated_data, actor=request.user)
        return Response(DatabaseServerSerializer(server).data)

    @extend_schema(request=DatabaseServerUpdateSerializer, responses={200: DatabaseServerSerializer})
    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, partial=True, **kwargs)

    def perform_destroy(self, instance):
        services.server_delete(server=instance, actor=self.request.user)


class DatabaseViewSet(TenantModelViewSet):
    """Databases; creating and dropping are jobs on the server (202 for the drop)."""

    queryset = Database.objects.select_related("server").prefetch_related("grants")
    serializer_class = DatabaseSerializer
    filterset_fields = ["server", "status"]
    search_fields = ["name", "full_name"]
    ordering_fields = ["name", "size_bytes", "created_at"]
    ordering = ["name"]
    http_method_names = ["get", "post", "delete", "head", "options"]
    required_roles = READ_MEMBER

    def perform_create(self, serializer):
        serializer.instance = services.database_create(tenant=self.tenant, actor=self.request.user,
                                                       **serializer.validated_data)  # fmt: skip

    @extend_schema(request=DropSerializer, responses={202: DatabaseSerializer},
                   summary='Drop the database (irreversible; a job): send {"confirm": "<name>"}')  # fmt: skip
    def destroy(self, request, pk=None):
        database = self.get_object()
        confirm = request.data.get("confirm") if hasattr(request.data, "get") else None
        confirm = confirm if confirm is not None else request.query_params.get("confirm")
        database = services.database_drop(database=database, confirm=confirm, actor=request.user)
        return Response(DatabaseSerializer(database).data, status=status.HTTP_202_ACCEPTED)


PASSWORD_ANSWER = inline_serializer(
    "DatabaseUserWithPassword",
    {"id": serializers.UUIDField(), "full_name": serializers.CharField(), "password": serializers.CharField()},
)


class DatabaseUserViewSet(TenantModelViewSet):
    """Logins on a database server. The password is generated and answered once."""

    queryset = DatabaseUser.objects.select_related("server")
    serializer_class = DatabaseUserSerializer
    filterset_fields = ["server", "status"]
    search_fields = ["name", "full_name"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    http_method_names = ["get", "post", "delete", "head", "options"]
    required_roles = {**READ_MEMBER, "rotate_password": Role.ADMIN}
    # A replayed create must not hand the password out a second time (nor store it).
    idempotency_secret_fields = ("password",)

    @extend_schema(responses={201: DatabaseUserWithPasswordSerializer})
    def create(self, request, *args, **kwargs):
        serializer = DatabaseUserSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, password = services.user_create(tenant=self.tenant, actor=request.user, **serializer.validated_data)
        data = DatabaseUserWithPasswordSerializer(user, context={"password": password}).data
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: DatabaseUserWithPasswordSerializer},
                   summary="A new password, answered this once (a job sets it on the server)")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="rotate-password")
    def rotate_password(self, request, pk=None):
        user, password = services.user_rotate_password(user=self.get_object(), actor=request.user)
        return Response(DatabaseUserWithPasswordSerializer(user, context={"password": password}).data)

    @extend_schema(request=None, responses={202: DatabaseUserSerializer}, summary="Drop the user (a job)")
    def destroy(self, request, pk=None):
        user = services.user_delete(user=self.get_object(), actor=request.user)
        return Response(DatabaseUserSerializer(user).data, status=status.HTTP_202_ACCEPTED)


class DatabaseGrantViewSet(TenantModelViewSet):
    """Users granted all privileges on one database (``/hosting/databases/{id}/grants``)."""

    queryset = DatabaseGrant.objects.all()
    serializer_class = DatabaseGrantSerializer
    filterset_fields = ["user", "status"]
    ordering_fields = ["created_at"]
    ordering = ["created_at"]
    http_method_names = ["get", "post", "delete", "head", "options"]
    required_roles = READ_MEMBER

    def database(self) -> Database:
        if not hasattr(self, "_database"):
            self._database = get_object_or_404(Database.objects.select_related("server"), pk=self.kwargs["database_pk"])
        return self._database

    def scope_queryset(self, queryset):
        return queryset.filter(database=self.database())

    def perform_create(self, serializer):
        serializer.instance = services.grant_create(database=self.database(), actor=self.request.user,
                                                    **serializer.validated_data)  # fmt: skip

    @extend_schema(request=None, responses={202: DatabaseGrantSerializer}, summary="Revoke (a job)")
    def destroy(self, request, *args, **kwargs):
        grant = services.grant_revoke(grant=self.get_object(), actor=request.user)
        return Response(DatabaseGrantSerializer(grant).data, status=status.HTTP_202_ACCEPTED)
