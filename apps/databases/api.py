"""/api/v1/hosting/databases: database servers, databases, users and grants.

Roles: servers (the panel's admin access to a database server) ADMIN+ for everything; databases,
users and grants are read by MEMBER+ and changed by ADMIN+ (they change a server). Dropping a
database also asks for its name in ``confirm``. A user's password is answered once, by create
and by ``rotate-password``; the admin password of a server is write-only.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantModelViewSet

from . import services
from .models import Database, DatabaseGrant, DatabaseServer, DatabaseUser
from .serializers import (
    DatabaseGrantSerializer,
    DatabaseSerializer,
    DatabaseServerSerializer,
    DatabaseServerUpdateSerializer,
    DatabaseUserSerializer,
    DatabaseUserWithPasswordSerializer,
    DropSerializer,
)

READ_MEMBER = {
    "list": Role.MEMBER,
    "retrieve": Role.MEMBER,
    "create": Role.ADMIN,
    "destroy": Role.ADMIN,
}


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
