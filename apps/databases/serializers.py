"""Database serializers: the input and output shapes of /api/v1/hosting/databases. A user's password
is answered once (create, rotate-password); a server's admin password is write-only."""

from __future__ import annotations

from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer
from apps.customers.models import Customer
from apps.nodes.models import Node
from apps.tenancy.roles import Role

from .models import Database, DatabaseGrant, DatabaseServer, DatabaseUser, Engine


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
    customer = serializers.PrimaryKeyRelatedField(
        queryset=Customer.objects, required=False, allow_null=True,
        help_text="The customer it is made for (their hosting plan's database limit counts it).",
    )  # fmt: skip
    engine = serializers.CharField(source="server.engine", read_only=True)
    users = serializers.SerializerMethodField()

    class Meta:
        model = Database
        fields = ["id", "server", "engine", "name", "full_name", "customer", "status", "size_bytes", "size_updated_at",
                  "users", "last_error", "created_at", "updated_at"]  # fmt: skip
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
