from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer
from apps.nodes.models import Node
from apps.websites.models import Website

from .models import Certificate, Challenge, SslSettings


class CertificateSerializer(ModelSerializer):
    """A certificate as lists and answers show it: never its key."""

    website = serializers.UUIDField(source="website_id", read_only=True, allow_null=True)
    mail_node = serializers.UUIDField(source="mail_node_id", read_only=True, allow_null=True)
    names = serializers.ListField(child=serializers.CharField(), read_only=True)
    days_left = serializers.SerializerMethodField()

    class Meta:
        model = Certificate
        fields = [
            "id",
            "names",
            "website",
            "mail_node",
            "source",
            "challenge",
            "status",
            "hsts",
            "revoke_on_delete",
            "automatic",
            "issuer",
            "serial",
            "fingerprint",
            "not_before",
            "not_after",
            "days_left",
            "renew_after",
            "retry_after",
            "failures",
            "installed_at",
            "revoked_at",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_days_left(self, obj: Certificate) -> int | None:
        from django.utils import timezone

        return (obj.not_after - timezone.now()).days if obj.not_after else None


class ChainEntrySerializer(Serializer):
    subject = serializers.CharField()
    issuer = serializers.CharField()
    not_after = serializers.DateTimeField()


class CertificateDetailSerializer(CertificateSerializer):
    """One certificate, with its chain (subjects and dates of each intermediate)."""

    chain = serializers.SerializerMethodField()

    class Meta(CertificateSerializer.Meta):
        fields = [*CertificateSerializer.Meta.fields, "chain"]
        read_only_fields = fields

    def get_chain(self, obj: Certificate) -> list[dict]:
        from agent import pem

        if not obj.chain_pem:
            return []
        out = []
        for cert in pem.load_certificates(obj.chain_pem, "chain"):
            out.append({"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                        "not_after": cert.not_valid_after_utc})  # fmt: skip
        return ChainEntrySerializer(out, many=True).data


class CertificateIssueSerializer(Serializer):
    names = serializers.ListField(child=serializers.CharField(max_length=300), required=False, max_length=100)
    website = serializers.PrimaryKeyRelatedField(queryset=Website.objects, required=False, allow_null=True)
    challenge = serializers.ChoiceField(choices=Challenge.choices, default=Challenge.HTTP_01)
    hsts = serializers.BooleanField(default=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["website"].queryset = Website.objects.all()  # per request, in its tenant's scope


class CertificateUploadSerializer(Serializer):
    certificate = serializers.CharField(max_length=65536, trim_whitespace=False)
    chain = serializers.CharField(max_length=65536, required=False, allow_blank=True, trim_whitespace=False)
    private_key = serializers.CharField(max_length=65536, trim_whitespace=False)
    website = serializers.PrimaryKeyRelatedField(queryset=Website.objects, required=False, allow_null=True)
    hsts = serializers.BooleanField(default=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["website"].queryset = Website.objects.all()


class CertificateUpdateSerializer(Serializer):
    """PATCH: the fields given change, the others keep their value."""

    hsts = serializers.BooleanField(required=False)
    revoke_on_delete = serializers.BooleanField(
        required=False,
        allow_null=True,
        help_text="revoke it at its CA when it, or its website, is deleted; null: the tenant's SSL settings decide",
    )


class CertificateDownloadSerializer(Serializer):
    certificate = serializers.CharField()
    chain = serializers.CharField(allow_blank=True)
    fullchain = serializers.CharField()


class CertificateKeySerializer(Serializer):
    private_key = serializers.CharField()


class CertificateMailSerializer(Serializer):
    """The mail node to serve the certificate on (``null``: take it off its mail node)."""

    node = serializers.PrimaryKeyRelatedField(queryset=Node.objects, allow_null=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["node"].queryset = Node.objects.all()  # per request: only the tenant's own nodes


class SslSettingsSerializer(ModelSerializer):
    """The tenant's SSL settings (the defaults, ``updated_at`` null, until it changes them)."""

    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = SslSettings
        fields = ["revoke_on_delete", "updated_at"]
        read_only_fields = fields


class SslSettingsInputSerializer(Serializer):
    """Fields left out keep their value."""

    revoke_on_delete = serializers.BooleanField(required=False)
