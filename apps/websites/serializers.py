from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer
from apps.customers.models import Customer
from apps.nodes.models import Node

from .models import Website, WwwRedirect


class RedirectSerializer(Serializer):
    source = serializers.CharField(max_length=201)
    target = serializers.CharField(max_length=2000)
    code = serializers.ChoiceField(choices=[301, 302, 307, 308], default=301)


class WebsiteSerializer(ModelSerializer):
    node = serializers.UUIDField(source="node_id", read_only=True)
    node_hostname = serializers.CharField(source="node.hostname", read_only=True)
    customer = serializers.UUIDField(source="customer_id", read_only=True, allow_null=True)
    redirects = RedirectSerializer(many=True, read_only=True)
    error_pages = serializers.DictField(child=serializers.CharField(), read_only=True)
    aliases = serializers.ListField(child=serializers.CharField(), read_only=True)
    certificate = serializers.DictField(read_only=True)

    class Meta:
        model = Website
        fields = [
            "id",
            "primary_domain",
            "aliases",
            "status",
            "node",
            "node_hostname",
            "customer",
            "system_user",
            "document_root",
            "php_version",
            "https",
            "redirect_https",
            "www_redirect",
            "redirects",
            "error_pages",
            "certificate",
            "last_error",
            "created_at",
            "updated_at",
            "deleted_at",
            "purge_after",
        ]
        read_only_fields = fields


class WebsiteWriteSerializer(Serializer):
    """Shapes only; the rules (IDNA, wildcards, uniqueness, paths) are in services/validators."""

    primary_domain = serializers.CharField(max_length=300)
    aliases = serializers.ListField(child=serializers.CharField(max_length=300), required=False, max_length=99)
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects, required=False, allow_null=True)
    system_user = serializers.CharField(max_length=32, required=False)
    document_root = serializers.CharField(max_length=200, required=False)
    php_version = serializers.CharField(max_length=8, required=False, allow_blank=True)
    https = serializers.BooleanField(required=False)
    redirect_https = serializers.BooleanField(required=False)
    www_redirect = serializers.ChoiceField(choices=WwwRedirect.choices, required=False)
    redirects = RedirectSerializer(many=True, required=False)
    error_pages = serializers.DictField(child=serializers.CharField(max_length=201), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Querysets are evaluated per request, inside the request's tenant scope.
        self.fields["customer"].queryset = Customer.objects.all()


class WebsiteCreateSerializer(WebsiteWriteSerializer):
    node = serializers.PrimaryKeyRelatedField(queryset=Node.objects, required=False, allow_null=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["node"].queryset = Node.objects.all()


class WebsiteUpdateSerializer(WebsiteWriteSerializer):
    primary_domain = serializers.CharField(max_length=300, required=False)
