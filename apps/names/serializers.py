from rest_framework import serializers

from apps.common.serializers import ModelSerializer

from .models import NameDelegation


class NameDelegationSerializer(ModelSerializer):
    name = serializers.CharField(max_length=253)
    grantee = serializers.UUIDField(source="grantee_id")

    class Meta:
        model = NameDelegation
        fields = ["id", "name", "grantee", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
