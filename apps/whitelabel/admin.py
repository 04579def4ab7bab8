"""The operators' screens of the white-label module: each tenant's brand with a preview of its logo
and colours (edited through the same services as the API: validated, audited), and custom portal
domains (read-only: the tenant proves a name through the API)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from apps.common.admin import ReadOnlyAdmin, apply_each
from apps.common.display import EMPTY, badge, when
from apps.common.exceptions import DomainError
from apps.tenancy.admin_base import TenantOwnedAdmin, TenantOwnedForm
from apps.tenancy.scoping import tenant_scope

from . import services, validators
from .models import Brand, CustomDomain
from .selectors import logo_path

SELLER_FIELDS = [
    "legal_name", "address_line1", "address_line2", "postal_code", "city", "region", "country", "vat_id",
    "registration_number", "invoice_footer", "terms_url",
]  # fmt: skip


class BrandForm(TenantOwnedForm):
    logo_file = forms.FileField(
        required=False, label="New logo", help_text="PNG, JPEG, WebP or a static SVG, at most 512 KiB"
    )
    remove_logo = forms.BooleanField(required=False, label="Remove the logo")

    class Meta:
        model = Brand
        fields = ["tenant", *services.FIELDS]

    def clean_primary_color(self):
        return self._rule(validators.primary_color, self.cleaned_data["primary_color"])

    def clean_nameservers(self):
        return self._rule(validators.nameservers, self.cleaned_data.get("nameservers") or [])

    def clean_accent_color(self):
        return self._rule(validators.accent_color, self.cleaned_data["accent_color"])

    def clean_logo_file(self):
        upload = self.cleaned_data.get("logo_file")
        if not upload:
            return None
        return self._rule(validators.logo, upload.read(validators.max_bytes() + 1))

    @staticmethod
    def _rule(rule, value):
        try:
            return rule(value)
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from exc


@admin.register(Brand)
class BrandAdmin(TenantOwnedAdmin):
    form = BrandForm
    list_display = ["display_name", "logo_thumbnail", "colours", "support_email", "legal_name", "vat_id"]
    actions = ["apply_nameservers"]
    search_fields = ["display_name", "legal_name", "support_email", "vat_id", "tenant__name"]
    readonly_fields = ["logo_preview", "contrast"]
    fieldsets = [
        (None, {"fields": ["tenant", "display_name"]}),
        ("Logo", {"fields": ["logo_preview", "logo_file", "remove_logo"]}),
        ("Colours", {"fields": ["primary_color", "accent_color", "contrast"]}),
        ("Support", {"fields": ["support_email", "sender_email", "support_url", "support_phone"]}),
        ("Seller on invoices", {"fields": SELLER_FIELDS}),
        (
            "Name servers",
            {
                "fields": ["nameservers"],
                "description": "Vanity name servers (a JSON list, e.g. "
                '["ns1.brand.com", "ns2.brand.com"]) for the zones the tenant serves here; their glue '
                'is set at the tenant\'s registrar. New zones get them; "Apply the name servers" '
                "rewrites the existing ones.",
            },
        ),
    ]

    @admin.display(description="Logo")
    def logo_thumbnail(self, brand: Brand):
        if not brand.logo:
            return EMPTY
        return format_html('<img src="{}" alt="" style="max-height:24px;max-width:96px;">', logo_path(brand))

    @admin.display(description="Logo preview")
    def logo_preview(self, brand: Brand):
        if not brand.pk or not brand.logo:
            return "No logo: the display name is shown instead."
        return format_html(
            '<div style="display:inline-block;padding:12px;background:{};border-radius:6px;">'
            '<img src="{}" alt="{}" style="max-height:64px;max-width:280px;display:block;background:#fff;'
            'padding:4px;border-radius:4px;"></div><div class="help">{}, {} bytes{}</div>',
            brand.primary_color, logo_path(brand), brand.display_name, brand.logo_content_type, brand.logo_size,
            f", {brand.logo_width}x{brand.logo_height} px" if brand.logo_width else "",
        )  # fmt: skip

    @admin.display(description="Colours")
    def colours(self, brand: Brand):
        return format_html(
            '<span style="display:inline-block;padding:2px 8px;background:{};color:{};border-radius:3px;">{}</span> '
            '<span style="display:inline-block;padding:2px 8px;background:{};color:{};border-radius:3px;">{}</span>',
            brand.primary_color, validators.text_on(brand.primary_color), brand.primary_color,
            brand.accent_color, validators.text_on(brand.accent_color), brand.accent_color,
        )  # fmt: skip

    @admin.display(description="Contrast (WCAG 2.x)")
    def contrast(self, brand: Brand):
        primary = validators.contrast(brand.primary_color, validators.WHITE)
        on_accent = validators.text_on(brand.accent_color)
        return format_html(
            "{} Primary on white {}:1 · accent with its text {}:1 (4.5:1 needed)",
            self.colours(brand), f"{primary:.2f}", f"{validators.contrast(brand.accent_color, on_accent):.2f}",
        )  # fmt: skip

    def save_model(self, request, obj, form, change):
        """Through the services (validated, audited there), never the row by hand."""
        data = {field: form.cleaned_data[field] for field in services.FIELDS if field in form.cleaned_data}
        saved = services.brand_update(tenant=obj.tenant, data=data, actor=request.user)
        logo = form.cleaned_data.get("logo_file")
        if logo is not None:
            saved = services.logo_upload(tenant=obj.tenant, content=logo.content, actor=request.user)
        elif form.cleaned_data.get("remove_logo") and saved.logo:
            saved = services.logo_delete(tenant=obj.tenant, actor=request.user)
        obj.pk = saved.pk
        obj.refresh_from_db()

    @admin.action(description="Apply the name servers to the tenant's existing zones", permissions=["operate"])
    def apply_nameservers(self, request, queryset):
        def run(brand: Brand) -> None:
            applied = services.nameservers_apply(tenant=brand.tenant, actor=request.user)
            self.message_user(request, f"{brand}: {len(applied.zones)} zone(s) rewritten.")

        apply_each(self, request, queryset, run, "Applied the name servers of", "brand(s)")

    def save_related(self, request, form, formsets, change):
        pass  # no related rows; the base would save the form's instance again


@admin.register(CustomDomain)
class CustomDomainAdmin(ReadOnlyAdmin, TenantOwnedAdmin):
    list_display = ["hostname", "state", "verified", "certificate_in_use", "checked"]
    list_filter = ["status"]
    search_fields = ["hostname", "tenant__name"]
    fields = ["tenant", "hostname", "status", "record", "verified_at", "last_checked_at", "last_error",
              "certificate_in_use", "certificate"]  # fmt: skip
    readonly_fields = fields
    actions = ["verify_now", "retry_certificate"]

    @admin.action(description="Check the selected domains' TXT records now", permissions=["operate"])
    def verify_now(self, request, queryset):
        def run(domain: CustomDomain) -> None:
            with tenant_scope(domain.tenant):
                services.domain_verify(domain=domain, actor=request.user)  # a record not found yet: a 409's words

        apply_each(self, request, queryset, run, "Verified", "domain(s)")

    @admin.action(description="Ask again for the selected domains' trusted certificates", permissions=["operate"])
    def retry_certificate(self, request, queryset):
        def run(domain: CustomDomain) -> None:
            with tenant_scope(domain.tenant):
                services.domain_certificate_retry(domain=domain, actor=request.user)

        apply_each(self, request, queryset, run, "Asked again for", "certificate(s)")

    @admin.display(description="Status", ordering="status")
    def state(self, domain: CustomDomain):
        return badge("active" if domain.status == "verified" else "pending", domain.get_status_display())

    @admin.display(description="Verified", ordering="verified_at")
    def verified(self, domain: CustomDomain):
        return when(domain.verified_at)

    @admin.display(description="Last check", ordering="last_checked_at")
    def checked(self, domain: CustomDomain):
        return when(domain.last_checked_at)

    @admin.display(description="TXT record")
    def record(self, domain: CustomDomain):
        return f"{domain.record_name}. TXT {domain.record_value}"

    # Not named ``certificate``: that is the SSL module's row (``CustomDomain.certificate``), shown apart.
    @admin.display(description="Certificate in use")
    def certificate_in_use(self, domain: CustomDomain):
        if not domain.certificate_kind:
            return EMPTY
        return f"{domain.get_certificate_kind_display()}, until {when(domain.certificate_not_after)}"
