"""Certificates in the operators' console: expiry badges, the CA's error of a failed issuance, and
"Renew now", "Revoke" and "Delete" buttons calling the same services as the API. The key is never
shown here (the tenant's ADMIN+ downloads it through the API after re-authenticating)."""

from django import forms
from django.conf import settings
from django.contrib import admin
from django.utils import timezone

from apps.common.admin import ObjectAction, ReadOnlyAdmin, apply_each, confirm_first
from apps.common.display import badge, when
from apps.jobs.admin import ServiceAdmin, ServiceForm, operating, retry_action
from apps.nodes.models import Node, with_role
from apps.tenancy.admin_base import TenantOwnedAdmin
from apps.websites.admin import HostnamesField

from . import services
from .models import AcmeAccount, Certificate, CertificateSource, CertificateStatus, SslSettings

S = CertificateStatus


def expiry_badge(cert: Certificate):
    if cert.not_after is None:
        return badge(None)
    days = (cert.not_after - timezone.now()).days
    if cert.not_after <= timezone.now():
        return badge("expired", f"Expired {when(cert.not_after)}")
    tone = "expiring" if days < settings.MPANEL_SSL_ALERT_DAYS else "valid"
    return badge(tone, f"{days} days ({when(cert.not_after)})")


class SecretTextarea(forms.Textarea):
    """A key typed into the page is never written back into it (a page shown again after an error)."""

    def format_value(self, value):
        return None


class CertificateAddForm(ServiceForm):
    """Issue from the ACME CA (names or a website), or upload a certificate with its chain and key:
    the API's two services, with the API's checks (a refused upload names its field here)."""

    names = HostnamesField(required=False, help_text="Hostnames, one a line (empty: the website's own).")
    certificate = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}),
                                  help_text="Upload: the certificate (PEM), its chain may follow.")  # fmt: skip
    chain = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}),
                            help_text="Upload: the intermediates (PEM), in order.")  # fmt: skip
    private_key = forms.CharField(required=False, widget=SecretTextarea(attrs={"rows": 6}), strip=False,
                                  help_text="Upload: the certificate's unencrypted private key (PEM); stored "
                                  "encrypted, never shown again.")  # fmt: skip

    class Meta:
        model = Certificate
        fields = ["tenant", "website", "names", "challenge", "hsts"]

    def clean(self):
        data = super().clean()
        if bool(data.get("certificate")) != bool(data.get("private_key")):
            raise forms.ValidationError("An upload needs both the certificate and its private key.")
        if not data.get("certificate") and not data.get("names") and not data.get("website"):
            raise forms.ValidationError("Name the hostnames or a website to issue for, or upload a certificate.")
        return data

    def act(self, data, actor):
        if data.get("certificate"):
            return services.certificate_upload(tenant=data["tenant"], certificate=data["certificate"],
                                               chain=data.get("chain") or "", private_key=data["private_key"],
                                               website=data.get("website"), hsts=data.get("hsts", False),
                                               actor=actor)  # fmt: skip
        return services.certificate_issue(tenant=data["tenant"], names=data.get("names") or None,
                                          website=data.get("website"), challenge=data["challenge"],
                                          hsts=data.get("hsts", False), actor=actor)  # fmt: skip


class MailNodeForm(forms.Form):
    node = forms.ModelChoiceField(
        queryset=Node.all_tenants.none(), required=False, help_text="the tenant's mail nodes; empty: take it off"
    )


@admin.register(Certificate)
class CertificateAdmin(ServiceAdmin):
    """Certificates change only through their services: the add page issues (ACME) or uploads; the
    buttons renew, revoke and delete."""

    list_display = ["name_list", "status", "expires", "source", "challenge", "issuer_short", "tenant"]
    list_filter = ["status", "source", "challenge", "tenant"]
    search_fields = ["names", "serial", "id"]
    list_select_related = ["tenant", "website"]
    ordering = ["not_after"]
    show_full_result_count = False
    actions = ["renew_selected"]
    add_form = CertificateAddForm
    add_fields = ["tenant", "website", "names", "challenge", "hsts", "certificate", "chain", "private_key"]
    shown_fields = [
        "tenant",
        "names",
        "website",
        "source",
        "challenge",
        "status",
        "expires",
        "last_error",
        "issuer",
        "serial",
        "fingerprint",
        "not_before",
        "renew_after",
        "retry_after",
        "failures",
        "alerted_at",
        "installed_at",
        "mail_node",
        "order_url",
        "hsts",
        "automatic",
        "revoke_on_delete",
    ]
    object_actions = [
        ObjectAction(
            "renew",
            "Renew now",
            method="renew_one",
            show=lambda c: c.source == CertificateSource.ACME and c.status in (S.VALID, S.EXPIRED, S.FAILED),
            help="Place a new ACME order now; the current certificate keeps serving until the new one is in.",
        ),
        retry_action,
        ObjectAction(
            "install_mail",
            "Install on mail node",
            method="install_mail_one",
            form=MailNodeForm,
            initial=lambda c: {"node": c.mail_node_id},
            show=lambda c: c.serving or c.mail_node_id is not None,
            help="Serve it on a mail node's Postfix and Dovecot for its names (SNI next to the node's others); "
            "a job pushes the node's certificates, and again on each renewal.",
        ),
        ObjectAction(
            "revoke",
            "Revoke",
            method="revoke_one",
            confirm="Revoke this certificate? Its website falls back to a self-signed certificate.",
            style="danger",
            show=lambda c: c.status in (S.VALID, S.RENEWING, S.EXPIRED),
        ),
        ObjectAction(
            "delete",
            "Delete",
            method="delete_one",
            confirm=True,
            style="danger",
            show=lambda c: c.status != S.DELETED,
        ),
    ]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="names")
    def name_list(self, cert):
        return str(cert)

    @admin.display(description="expires", ordering="not_after")
    def expires(self, cert):
        return expiry_badge(cert)

    @admin.display(description="issuer")
    def issuer_short(self, cert):
        return cert.issuer.split(",")[0].removeprefix("CN=")[:60] if cert.issuer else "—"

    def get_object_action_form(self, request, action, obj):
        form = super().get_object_action_form(request, action, obj)
        if action.name != "install_mail" or obj is None:
            return form
        nodes = Node.all_tenants.filter(with_role("mail"), tenant_id=obj.tenant_id).order_by("hostname")

        class TenantMailNodeForm(MailNodeForm):  # only the certificate's tenant's mail nodes to choose
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.fields["node"].queryset = nodes

        return TenantMailNodeForm

    def install_mail_one(self, request, cert, data):
        node = data.get("node")
        services.certificate_install_mail(certificate=cert, node=node, actor=request.user)
        return f"{cert}: being installed on {node.hostname}." if node else f"{cert}: taken off its mail node."

    def renew_one(self, request, cert, data):
        services.certificate_renew(certificate=cert, actor=request.user)
        return f"Renewing {cert}: a job places the order."

    def revoke_one(self, request, cert, data):
        services.certificate_revoke(certificate=cert, actor=request.user)
        return f"Revoked {cert}; its website is being switched back."

    def delete_one(self, request, cert, data):
        services.certificate_delete(certificate=cert, actor=request.user)
        return f"Deleted {cert}."

    @admin.action(description="Renew the selected certificates now", permissions=["operate"])
    @confirm_first
    def renew_selected(self, request, queryset):
        def one(cert):
            with operating(cert.tenant):
                services.certificate_renew(certificate=cert, actor=request.user)

        apply_each(self, request, queryset, one, "Renewing", "certificate(s)")


@admin.register(AcmeAccount)
class AcmeAccountAdmin(ReadOnlyAdmin):
    """Tenants' ACME accounts (registered on first issuance; the key is never shown)."""

    list_display = ["tenant", "directory", "email", "uri"]
    list_filter = ["directory"]
    search_fields = ["email", "uri"]
    list_select_related = ["tenant"]
    exclude = ["key_encrypted"]


@admin.register(SslSettings)
class SslSettingsAdmin(TenantOwnedAdmin):
    """A tenant's SSL choices; written through ``services.settings_update`` (audited there)."""

    list_display = ["tenant", "revoke_on_delete", "updated_at"]
    list_filter = ["revoke_on_delete"]
    search_fields = ["tenant__name", "tenant__slug"]
    list_select_related = ["tenant"]
    fields = ["tenant", "revoke_on_delete"]

    def save_model(self, request, obj, form, change):
        with operating(obj.tenant):
            row = services.settings_update(tenant=obj.tenant, data={"revoke_on_delete": obj.revoke_on_delete},
                                           actor=request.user)  # fmt: skip
        obj.pk, obj._state.adding = row.pk, False
