"""Mail serializers: the input and output shapes of /api/v1/hosting/email. Passwords are write-only;
only their Dovecot hash is stored, and never answered."""

from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer
from apps.customers.models import Customer
from apps.nodes.models import Node

from .models import Alias, Autoresponder, Mailbox, MailDomain


class MailDomainSerializer(ModelSerializer):
    name = serializers.CharField(max_length=253)
    node = serializers.PrimaryKeyRelatedField(queryset=Node.objects, required=False)
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects, required=False, allow_null=True)
    catch_all = serializers.CharField(max_length=254, required=False, allow_blank=True)
    dkim = serializers.SerializerMethodField()

    class Meta:
        model = MailDomain
        fields = ["id", "name", "node", "customer", "status", "catch_all", "dkim", "last_error", "created_at",
                  "updated_at"]  # fmt: skip
        read_only_fields = ["status", "last_error", "created_at", "updated_at"]

    def get_dkim(self, obj) -> dict:
        """The DKIM DNS record to publish (done automatically when the zone is ours)."""
        return {"name": f"{obj.dkim_selector}._domainkey.{obj.name}.", "type": "TXT", "content": obj.dkim_record}


class MailDomainUpdateSerializer(Serializer):
    catch_all = serializers.CharField(max_length=254, required=False, allow_blank=True)


class MailboxSerializer(ModelSerializer):
    local_part = serializers.CharField(max_length=64)
    password = serializers.CharField(write_only=True, min_length=10, max_length=1024, trim_whitespace=False)
    address = serializers.CharField(read_only=True)

    class Meta:
        model = Mailbox
        fields = ["id", "mail_domain", "local_part", "address", "password", "quota_mb", "enabled", "created_at",
                  "updated_at"]  # fmt: skip
        read_only_fields = ["mail_domain", "created_at", "updated_at"]


class MailboxUpdateSerializer(Serializer):
    password = serializers.CharField(write_only=True, min_length=10, max_length=1024, trim_whitespace=False,
                                     required=False)  # fmt: skip
    quota_mb = serializers.IntegerField(min_value=0, required=False)
    enabled = serializers.BooleanField(required=False)


class AliasSerializer(ModelSerializer):
    local_part = serializers.CharField(max_length=64)
    destinations = serializers.ListField(child=serializers.CharField(max_length=254), min_length=1, max_length=50)

    class Meta:
        model = Alias
        fields = ["id", "mail_domain", "local_part", "destinations", "created_at", "updated_at"]
        read_only_fields = ["mail_domain", "created_at", "updated_at"]


class AliasUpdateSerializer(Serializer):
    destinations = serializers.ListField(child=serializers.CharField(max_length=254), min_length=1, max_length=50)


class AutoresponderSerializer(ModelSerializer):
    mailbox = serializers.PrimaryKeyRelatedField(queryset=Mailbox.objects)
    subject = serializers.CharField(max_length=200, trim_whitespace=False)
    body = serializers.CharField(max_length=8000, trim_whitespace=False)
    interval_days = serializers.IntegerField(min_value=1, max_value=60, required=False, default=1)
    address = serializers.CharField(source="mailbox.address", read_only=True)

    class Meta:
        model = Autoresponder
        fields = ["id", "mailbox", "address", "enabled", "subject", "body", "start_date", "end_date",
                  "interval_days", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["created_at", "updated_at"]


class AutoresponderUpdateSerializer(Serializer):
    enabled = serializers.BooleanField(required=False)
    subject = serializers.CharField(max_length=200, trim_whitespace=False, required=False)
    body = serializers.CharField(max_length=8000, trim_whitespace=False, required=False)
    start_date = serializers.DateField(required=False, allow_null=True)
    end_date = serializers.DateField(required=False, allow_null=True)
    interval_days = serializers.IntegerField(min_value=1, max_value=60, required=False)
