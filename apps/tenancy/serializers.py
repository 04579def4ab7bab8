from django_countries.serializer_fields import CountryField
from rest_framework import serializers

from apps.common.money import CURRENCY_CHOICES
from apps.common.serializers import ModelSerializer, Serializer

from .models import INVITATION_STATUSES, Invitation, Membership, Tenant
from .roles import Role


class TenantSerializer(ModelSerializer):
    role = serializers.SerializerMethodField()
    country = CountryField(required=False, allow_blank=True)
    default_currency = serializers.ChoiceField(choices=CURRENCY_CHOICES, required=False)

    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "status", "default_currency", "country", "role", "created_at"]
        read_only_fields = ["id", "slug", "status", "role", "created_at"]

    def get_role(self, tenant) -> str | None:
        # Annotated by the queryset (no query per row).
        return getattr(tenant, "my_role", None)

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("This field may not be blank.")
        return value


class MemberSerializer(ModelSerializer):
    user = serializers.UUIDField(source="user_id", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    full_name = serializers.CharField(source="user.full_name", read_only=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Membership
        fields = ["id", "user", "email", "full_name", "role", "status", "created_at"]
        read_only_fields = fields

    def get_status(self, obj) -> str:
        return "active"


class MemberCreateSerializer(Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class MemberUpdateSerializer(Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationSerializer(ModelSerializer):
    """An invitation as its tenant's admins see it (also the answer to adding a member)."""

    status = serializers.ChoiceField(choices=INVITATION_STATUSES, read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "status", "expires_at", "created_at"]
        read_only_fields = fields


class MyInvitationSerializer(ModelSerializer):
    """An invitation as its addressee sees it: which tenant, which role, from whom."""

    tenant = serializers.UUIDField(source="tenant_id", read_only=True)
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)
    invited_by = serializers.EmailField(source="invited_by.email", read_only=True, allow_null=True, default=None)
    status = serializers.ChoiceField(choices=INVITATION_STATUSES, read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "tenant", "tenant_name", "email", "role", "invited_by", "status", "expires_at", "created_at"]
        read_only_fields = fields


class AcceptInvitationSerializer(Serializer):
    token = serializers.CharField(max_length=200)


class TenantUserSerializer(ModelSerializer):
    """A member of the current tenant, seen through ``/users``."""

    id = serializers.UUIDField(source="user_id", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    full_name = serializers.CharField(source="user.full_name", read_only=True)
    last_login = serializers.DateTimeField(source="user.last_login", read_only=True, allow_null=True)
    is_active = serializers.BooleanField(source="user.is_active", read_only=True)
    member_since = serializers.DateTimeField(source="created_at", read_only=True)
    created_at = serializers.DateTimeField(source="user.date_joined", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "full_name", "role", "is_active", "last_login", "member_since", "created_at"]
        read_only_fields = fields
