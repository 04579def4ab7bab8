"""/api/v1/hosting/databases: database servers, databases, users and grants.

Roles: servers (the panel's admin access to a database server) ADMIN+ for everything; databases,
users and grants are read by MEMBER+ and changed by ADMIN+ (they change a server). Dropping a
database also asks for its name in ``confirm``. A user's password is answered once, by create
and by ``rotate-password``; the admin password of a server is write-only.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

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


class DatabaseServerViewSet(ResourceViewSet):
    """Database servers a node of the tenant acts on (the panel's admin access to them)."""

    queryset = DatabaseServer.objects.select_related("node")
    serializer_class = DatabaseServerSerializer
    input_serializers = {"create": DatabaseServerSerializer, "update": DatabaseServerUpdateSerializer}
    destroy_answers_object = False
    filterset_fields = ["engine", "node", "status"]
    search_fields = ["host"]
    ordering_fields = ["engine", "host", "port", "created_at"]
    ordering = ["engine", "host", "port"]
    required_roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    def create_resource(self, data):
        return services.server_create(tenant=self.tenant, actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return services.server_update(server=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        services.server_delete(server=obj, actor=self.request.user)


DROP_SUMMARY = 'Drop the database (irreversible; a job): send {"confirm": "<name>"}'


@extend_schema_view(destroy=extend_schema(request=DropSerializer, summary=DROP_SUMMARY))
class DatabaseViewSet(ResourceViewSet):
    """Databases; creating and dropping are jobs on the server (202 for the drop)."""

    queryset = Database.objects.select_related("server").prefetch_related("grants")
    serializer_class = DatabaseSerializer
    input_serializers = {"create": DatabaseSerializer}
    filterset_fields = ["server", "status"]
    search_fields = ["name", "full_name"]
    ordering_fields = ["name", "size_bytes", "created_at"]
    ordering = ["name"]
    required_roles = READ_MEMBER

    def create_resource(self, data):
        return services.database_create(tenant=self.tenant, actor=self.request.user, **data)

    def destroy_resource(self, obj):
        # ``confirm`` comes in the body, or in the query string (some clients send no DELETE body).
        confirm = self.request.data.get("confirm") if hasattr(self.request.data, "get") else None
        confirm = confirm if confirm is not None else self.request.query_params.get("confirm")
        return services.database_drop(database=obj, confirm=confirm, actor=self.request.user)


@extend_schema_view(destroy=extend_schema(summary="Drop the user (a job)"))
class DatabaseUserViewSet(ResourceViewSet):
    """Logins on a database server. The password is generated and answered once."""

    queryset = DatabaseUser.objects.select_related("server")
    serializer_class = DatabaseUserSerializer
    input_serializers = {"create": DatabaseUserSerializer}
    filterset_fields = ["server", "status"]
    search_fields = ["name", "full_name"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    required_roles = {**READ_MEMBER, "rotate_password": Role.ADMIN}
    # A replayed create must not hand the password out a second time (nor store it).
    idempotency_secret_fields = ("password",)
    password: str | None = None  # made by this request's create or rotate-password, answered once

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "password": self.password}

    @extend_schema(responses={201: DatabaseUserWithPasswordSerializer})
    def create(self, request, *args, **kwargs):
        # Written out: the answer shows the new password (the base answers with serializer_class).
        user, self.password = services.user_create(tenant=self.tenant, actor=request.user, **self.validated())
        return self.answer(user, status.HTTP_201_CREATED, serializer=DatabaseUserWithPasswordSerializer)

    @extend_schema(request=None, responses={200: DatabaseUserWithPasswordSerializer},
                   summary="A new password, answered this once (a job sets it on the server)")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="rotate-password")
    def rotate_password(self, request, pk=None):
        user, self.password = services.user_rotate_password(user=self.get_object(), actor=request.user)
        return self.answer(user, serializer=DatabaseUserWithPasswordSerializer)

    def destroy_resource(self, obj):
        return services.user_delete(user=obj, actor=self.request.user)


@extend_schema_view(destroy=extend_schema(summary="Revoke (a job)"))
class DatabaseGrantViewSet(ResourceViewSet):
    """Users granted all privileges on one database."""

    queryset = DatabaseGrant.objects.all()
    serializer_class = DatabaseGrantSerializer
    input_serializers = {"create": DatabaseGrantSerializer}
    filterset_fields = ["user", "status"]
    ordering_fields = ["created_at"]
    ordering = ["created_at"]
    required_roles = READ_MEMBER

    def database(self) -> Database:
        if not hasattr(self, "_database"):
            self._database = get_object_or_404(Database.objects.select_related("server"), pk=self.kwargs["database_pk"])
        return self._database

    def scope_queryset(self, queryset):
        return queryset.filter(database=self.database())

    def create_resource(self, data):
        return services.grant_create(database=self.database(), actor=self.request.user, **data)

    def destroy_resource(self, obj):
        return services.grant_revoke(grant=obj, actor=self.request.user)
