from __future__ import annotations

from django_countries.serializer_fields import CountryField
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer

from . import validators
from .models import Brand, CertificateKind, CustomDomain, DomainStatus
from .selectors import logo_path


class BrandInputSerializer(Serializer):
    """A PUT sends the whole brand (left-out fields go back to their defaults); a PATCH any part."""

    display_name = serializers.CharField(max_length=100, help_text="the name customers see")
    primary_color = serializers.CharField(
        required=False, max_length=7, help_text="#rrggbb; at least 4.5:1 against white (WCAG 2.x AA)"
    )
    accent_color = serializers.CharField(
        required=False, max_length=7, help_text="#rrggbb; at least 4.5:1 with white or dark text"
    )
    support_email = serializers.EmailField(required=False, allow_blank=True, help_text="Reply-To of every e-mail")
    sender_email = serializers.EmailField(
        required=False, allow_blank=True,
        help_text="From of customers' e-mails; on a mail domain of yours hosted here they are DKIM-signed",
    )  # fmt: skip
    support_url = serializers.URLField(required=False, allow_blank=True, max_length=200)
    support_phone = serializers.RegexField(r"^\+?[0-9 ()./-]{3,32}$", required=False, allow_blank=True, max_length=32)
    legal_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    address_line1 = serializers.CharField(required=False, allow_blank=True, max_length=200)
    address_line2 = serializers.CharField(required=False, allow_blank=True, max_length=200)
    postal_code = serializers.CharField(required=False, allow_blank=True, max_length=20)
    city = serializers.CharField(required=False, allow_blank=True, max_length=100)
    region = serializers.CharField(required=False, allow_blank=True, max_length=100)
    country = CountryField(required=False, allow_blank=True)
    vat_id = serializers.RegexField(
        r"^[A-Za-z0-9 .-]{2,32}$", required=False, allow_blank=True, max_length=32, help_text="e.g. DE123456789"
    )
    registration_number = serializers.CharField(required=False, allow_blank=True, max_length=64)
    invoice_footer = serializers.CharField(required=False, allow_blank=True, max_length=1000)
    terms_url = serializers.URLField(required=False, allow_blank=True, max_length=200)
    nameservers = serializers.ListField(
        child=serializers.CharField(max_length=253), required=False, max_length=13,
        help_text="vanity name servers for the zones you serve here (ns1.brand.com…): none, or at least two",
    )  # fmt: skip

    def validate_nameservers(self, value: list[str]) -> list[str]:
        return validators.nameservers(value)

    def validate_primary_color(self, value: str) -> str:
        return validators.primary_color(value)

    def validate_accent_color(self, value: str) -> str:
        return validators.accent_color(value)


class BrandSerializer(ModelSerializer):
    logo = serializers.SerializerMethodField()
    contrast = serializers.SerializerMethodField()
    # Empty until the tenant sets them: plain strings in the answer (an empty value is no e-mail,
    # URL or country code, so the schema must not promise those formats).
    country = serializers.CharField(read_only=True, help_text="ISO 3166-1 alpha-2 code, or empty")
    support_email = serializers.CharField(read_only=True, help_text="an e-mail address, or empty")
    sender_email = serializers.CharField(read_only=True, help_text="an e-mail address, or empty")
    support_url = serializers.CharField(read_only=True, help_text="a URL, or empty")
    terms_url = serializers.CharField(read_only=True, help_text="a URL, or empty")
    # None until the brand is first saved (a tenant that never set one reads the defaults).
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = Brand
        fields = [
            "display_name", "logo", "primary_color", "accent_color", "contrast", "support_email", "sender_email",
            "support_url", "support_phone", "legal_name", "address_line1", "address_line2", "postal_code", "city",
            "region", "country", "vat_id", "registration_number", "invoice_footer", "terms_url", "nameservers",
            "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {
                "url": {"type": "string"},
                "content_type": {"type": "string"},
                "size": {"type": "integer"},
                "width": {"type": "integer", "nullable": True},
                "height": {"type": "integer", "nullable": True},
                "sha256": {"type": "string"},
            },
        }
    )
    def get_logo(self, brand: Brand) -> dict | None:
        if not brand.logo:
            return None
        request = self.context.get("request")
        path = logo_path(brand)
        return {
            "url": request.build_absolute_uri(path) if request is not None else path,
            "content_type": brand.logo_content_type,
            "size": brand.logo_size,
            "width": brand.logo_width,
            "height": brand.logo_height,
            "sha256": brand.logo_sha256,
        }

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "primary_on_white": {"type": "number"},
                "text_on_primary": {"type": "string"},
                "accent_best": {"type": "number"},
                "text_on_accent": {"type": "string"},
            },
        }
    )
    def get_contrast(self, brand: Brand) -> dict:
        """The WCAG 2.x ratios of the colours, and the text colour drawn on each."""
        on_accent = validators.text_on(brand.accent_color)
        return {
            "primary_on_white": round(validators.contrast(brand.primary_color, validators.WHITE), 2),
            "text_on_primary": validators.text_on(brand.primary_color),
            "accent_best": round(validators.contrast(brand.accent_color, on_accent), 2),
            "text_on_accent": on_accent,
        }


class AppliedZoneSerializer(Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class NameserversAppliedSerializer(Serializer):
    nameservers = serializers.ListField(child=serializers.CharField(), help_text="What the zones' apex now lists.")
    zones = AppliedZoneSerializer(many=True, help_text="The zones rewritten (each pushed by its own job).")


class LogoUploadSerializer(Serializer):
    file = serializers.FileField(help_text="PNG, JPEG, WebP or a static SVG, at most 512 KiB")


class CustomDomainCreateSerializer(Serializer):
    hostname = serializers.CharField(max_length=253, help_text="e.g. my.brand.com")


class CustomDomainSerializer(ModelSerializer):
    verification = serializers.SerializerMethodField()
    certificate = serializers.SerializerMethodField()

    class Meta:
        model = CustomDomain
        fields = [
            "id", "hostname", "status", "verification", "verified_at", "last_checked_at", "last_error",
            "certificate", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "properties": {"type": {"type": "string"}, "name": {"type": "string"}, "content": {"type": "string"}},
        }
    )
    def get_verification(self, domain: CustomDomain) -> dict:
        """The DNS record that proves the name (kept as long as the domain is in use)."""
        return {"type": "TXT", "name": domain.record_name + ".", "content": domain.record_value}

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {
                "kind": {"type": "string", "enum": ["self-signed", "acme"]},
                "trusted": {"type": "boolean"},
                "not_after": {"type": "string", "format": "date-time"},
                "sha256_fingerprint": {"type": "string"},
                "issuance": {
                    "type": "object",
                    "nullable": True,
                    "description": "The SSL module's certificate for this host (GET /enterprise/ssl/{id}).",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string"},
                        "error": {"type": "string"},
                    },
                },
                "note": {"type": "string"},
            },
        }
    )
    def get_certificate(self, domain: CustomDomain) -> dict | None:
        if domain.status != DomainStatus.VERIFIED or not domain.certificate_kind:
            return None
        trusted = domain.certificate_kind == CertificateKind.ACME
        issued = domain.certificate
        issuance = None
        if issued is not None:
            issuance = {"id": str(issued.pk), "status": issued.status, "error": issued.last_error or ""}
        if trusted:
            note = "A trusted certificate from the certificate authority, renewed automatically."
        elif issued is not None and issued.status in ("pending", "issuing"):  # the SSL module's statuses
            note = "Self-signed while the trusted certificate is issued: browsers warn until then."
        elif issued is not None and issued.status == "failed":
            note = "Self-signed: the trusted certificate could not be issued (see issuance.error). Browsers warn."
        else:
            note = "Self-signed: browsers warn."
        return {
            "kind": domain.certificate_kind,
            "trusted": trusted,
            "not_after": serializers.DateTimeField().to_representation(domain.certificate_not_after),
            "sha256_fingerprint": domain.certificate_sha256,
            "issuance": issuance,
            "note": note,
        }
