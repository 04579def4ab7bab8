from rest_framework import serializers

from apps.common.serializers import ModelSerializer

from .models import AuditEvent


class AuditEventSerializer(ModelSerializer):
    actor = serializers.UUIDField(source="actor_id", read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "actor_email",
            "via",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "request_id",
            "ip",
        ]
        read_only_fields = fields
