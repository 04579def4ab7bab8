"""Domains in the operators' console: added or registered through the registrar driver, edited,
verified, renewed, transferred out and deleted through the same services as the API."""

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from apps.common.admin import ObjectAction
from apps.common.display import badge, when
from apps.customers.models import Customer
from apps.jobs.admin import ServiceAdmin, ServiceForm, retry_action, tenant_from

from . import registrars, services
from .models import Domain, DomainSettings

EDITABLE = ["customer", "auto_renew", "renewal_price", "expires_at", "nameservers"]


class NameserversField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [n for n in (super().to_python(value) or "").replace(",", " ").split() if n]


class DomainForm(ServiceForm):
    nameservers = NameserversField(required=False, help_text="One a line; a job asks the registrar to set them.")

    class Meta:
        model = Domain
        fields = EDITABLE

    def act(self, data, actor):
        changes = self.changed(data, EDITABLE)
        return services.domain_update(domain=self.instance, data=changes, actor=actor) if changes else self.instance


class DomainAddForm(DomainForm):
    registrar = forms.ChoiceField(
        choices=lambda: [(n, n) for n in registrars.names()],
        initial="manual",
        help_text="“manual”: a domain registered elsewhere, kept here for its records.",
    )
    years = forms.IntegerField(min_value=1, max_value=10, initial=1)

    class Meta:
        model = Domain
        fields = [
            "tenant",
            "name",
            "customer",
            "registrar",
            "years",
            "registered_at",
            "expires_at",
            "auto_renew",
            "nameservers",
            "renewal_price",
        ]

    def act(self, data, actor):
        keys = ["customer", "registrar", "years", "registered_at", "expires_at", "auto_renew", "renewal_price"]
        return services.domain_create(
            tenant=data["tenant"],
            name=data["name"],
            nameservers=data.get("nameservers"),
            actor=actor,
            **{k: data[k] for k in keys if data.get(k) is not None},
        )


class RenewForm(forms.Form):
    years = forms.IntegerField(min_value=1, max_value=10, initial=1)


@admin.register(Domain)
class DomainAdmin(ServiceAdmin):
    """Domains change through their services (registrar driver, verification, billing)."""

    list_display = [
        "name",
        "status",
        "customer",
        "registrar",
        "registrar_state",
        "expires_at",
        "auto_renew",
        "verified",
        "tenant",
    ]
    list_filter = ["status", "registrar", "registrar_state", "auto_renew", "tenant"]
    search_fields = ["name", "id"]
    list_select_related = ["customer", "tenant"]
    date_hierarchy = "expires_at"
    show_full_result_count = False
    add_form = DomainAddForm
    form = DomainForm
    add_fields = [
        "tenant",
        "name",
        "customer",
        "registrar",
        "years",
        "registered_at",
        "expires_at",
        "auto_renew",
        "nameservers",
        "renewal_price",
    ]
    change_fields = EDITABLE
    shown_fields = [
        "tenant",
        "name",
        "status",
        "registrar",
        "registrar_state_shown",
        "registered_at",
        "pending_nameservers",
        "challenge",
        "verified",
        "last_error",
    ]
    object_actions = [
        ObjectAction(
            "verify",
            "Verify",
            method="verify_one",
            show=lambda d: d.status not in services.GONE,
            help="Look the ownership challenge up in DNS now.",
        ),
        ObjectAction(
            "renew",
            "Renew",
            method="renew_one",
            form=RenewForm,
            show=lambda d: d.status not in services.GONE,
            help="Renew through the registrar (billed to the customer at the renewal price).",
        ),
        retry_action,
        ObjectAction(
            "transfer_out",
            "Transfer out",
            method="transfer_out_one",
            confirm=True,
            style="danger",
            show=lambda d: d.status not in services.GONE,
            help="Release the domain to another registrar; auto-renew stops now.",
        ),
        ObjectAction(
            "delete",
            "Delete",
            method="delete_one",
            confirm=True,
            style="danger",
            help="Forget the domain here (its registration is not cancelled).",
        ),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "customer" in form.base_fields:
            tenant = obj.tenant if obj is not None else tenant_from(request)
            customers = Customer.all_tenants.all()
            form.base_fields["customer"].queryset = customers.filter(tenant=tenant) if tenant is not None else customers
        return form

    @admin.display(description="registrar state", ordering="registrar_state")
    def registrar_state_shown(self, obj):
        return badge(obj.registrar_state, obj.get_registrar_state_display())

    @admin.display(description="verified", ordering="verified_at")
    def verified(self, obj):
        return when(obj.verified_at)

    @admin.display(description="ownership challenge")
    def challenge(self, obj):
        return format_html("TXT <code>{}</code> with <code>{}</code>", obj.challenge_name, obj.challenge_value)

    def verify_one(self, request, domain, data):
        services.domain_verify(domain=domain, actor=request.user)
        return f"{domain.name} is verified."

    def renew_one(self, request, domain, data):
        services.domain_renew(domain=domain, years=data["years"], actor=request.user)
        return f"Renewing {domain.name} for {data['years']} year(s) through {domain.registrar}."

    def transfer_out_one(self, request, domain, data):
        services.domain_transfer_out(domain=domain, actor=request.user)
        return f"Transferring {domain.name} out."

    def delete_one(self, request, domain, data):
        services.domain_delete(domain=domain, actor=request.user)
        return self.gone_to_list(request, domain, f"Deleted {domain.name}.")


SETTINGS_EDITABLE = [
    "nameservers",
    "registrar",
    "on_failed_registration",
    "epp_host",
    "epp_port",
    "epp_client_id",
    "epp_password",
    "epp_client_cert",
    "epp_client_key",
    "epp_ca_cert",
    "epp_admin_contact",
    "epp_tech_contact",
    "epp_billing_contact",
]
SECRETS = ("epp_password", "epp_client_key")


class DomainSettingsForm(ServiceForm):
    nameservers = NameserversField(
        required=False, help_text="One a line (at least two); empty: the platform's (MPANEL_DNS_NAMESERVERS)."
    )
    registrar = forms.ChoiceField(choices=lambda: [(n, n) for n in registrars.names()], initial="manual")
    epp_password = forms.CharField(
        label="EPP password",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted, never shown; leave empty to keep the current one.",
    )
    epp_client_key = forms.CharField(
        label="EPP TLS client key (PEM)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Stored encrypted, never shown; leave empty to keep the current one.",
    )

    class Meta:
        model = DomainSettings
        fields = [f for f in SETTINGS_EDITABLE if f not in SECRETS]

    def act(self, data, actor):
        changes = self.changed(data, [f for f in SETTINGS_EDITABLE if f not in SECRETS])
        # A secret field left empty keeps the stored secret (it is never sent back to the page).
        changes.update({f: data[f] for f in SECRETS if data.get(f)})
        tenant = self.tenant_for(data)
        if not changes and not self.instance._state.adding:
            return self.instance
        return services.domain_settings_update(tenant=tenant, data=changes, actor=actor)


class DomainSettingsAddForm(DomainSettingsForm):
    class Meta(DomainSettingsForm.Meta):
        fields = ["tenant", *DomainSettingsForm.Meta.fields]

    def act(self, data, actor):
        changes = {f: data[f] for f in SETTINGS_EDITABLE if f in data and f not in SECRETS}
        changes.update({f: data[f] for f in SECRETS if data.get(f)})
        return services.domain_settings_update(tenant=data["tenant"], data=changes, actor=actor)


@admin.register(DomainSettings)
class DomainSettingsAdmin(ServiceAdmin):
    """A tenant's domain settings: its nameservers, what a refused paid registration does, and its EPP
    account (password and client key write-only, stored encrypted)."""

    list_display = ["tenant", "registrar", "on_failed_registration", "epp_host", "epp_client_id", "epp_ready"]
    list_filter = ["registrar", "on_failed_registration", "tenant"]
    search_fields = ["tenant__name", "epp_host", "epp_client_id"]
    list_select_related = ["tenant"]
    add_form = DomainSettingsAddForm
    form = DomainSettingsForm
    add_fields = ["tenant", *SETTINGS_EDITABLE]
    change_fields = SETTINGS_EDITABLE
    shown_fields = ["tenant", "epp_ready", "updated_at"]

    @admin.display(description="EPP account", boolean=True)
    def epp_ready(self, obj):
        return obj.epp_configured
