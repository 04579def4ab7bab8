"""Mail in the operators' console: mail domains (DKIM key, DNS records published, the node synced),
mailboxes (the password set through the service, stored only as a hash) and aliases, created,
edited and deleted through the same services as the API."""

from django import forms
from django.contrib import admin

from apps.common.admin import ObjectAction
from apps.common.display import when
from apps.customers.models import Customer
from apps.jobs.admin import ServiceAdmin, ServiceForm, tenant_from
from apps.nodes.admin_base import NodeChoiceMixin

from . import services
from .models import Alias, Autoresponder, Mailbox, MailDomain


class MailDomainAddForm(ServiceForm):
    class Meta:
        model = MailDomain
        fields = ["tenant", "name", "node", "customer", "catch_all"]

    def act(self, data, actor):
        return services.mail_domain_create(
            tenant=data["tenant"],
            name=data["name"],
            node=data.get("node"),
            customer=data.get("customer"),
            catch_all=data.get("catch_all") or "",
            actor=actor,
        )


class MailDomainForm(ServiceForm):
    class Meta:
        model = MailDomain
        fields = ["catch_all"]

    def act(self, data, actor):
        changes = self.changed(data, ["catch_all"])
        return (
            services.mail_domain_update(mail_domain=self.instance, data=changes, actor=actor)
            if changes
            else self.instance
        )


@admin.register(MailDomain)
class MailDomainAdmin(NodeChoiceMixin, ServiceAdmin):
    """Mail domains change through their services: the add and change pages and the buttons."""

    node_role, node_automatic = "mail", "Automatic (the first active mail node)"

    list_display = ["name", "status", "node", "catch_all", "dkim_selector", "created", "tenant"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "id"]
    list_select_related = ["node", "tenant"]
    show_full_result_count = False
    add_form = MailDomainAddForm
    form = MailDomainForm
    add_fields = ["tenant", "name", "node", "customer", "catch_all"]
    change_fields = ["catch_all"]
    shown_fields = ["tenant", "status", "node", "customer", "dkim_selector", "dkim_record_shown", "created"]
    object_actions = [
        ObjectAction(
            "publish",
            "Publish DNS records",
            method="publish_one",
            help="Add MX, SPF, DKIM and DMARC to the tenant's zone of this name (records there are kept).",
        ),
        ObjectAction(
            "delete",
            "Delete",
            method="delete_one",
            confirm=True,
            style="danger",
            help="The mail domain goes with its mailboxes and aliases (the node drops them).",
        ),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        fields = form.base_fields
        tenant = tenant_from(request)
        if "customer" in fields:
            customers = Customer.all_tenants.all()
            fields["customer"].queryset = customers.filter(tenant=tenant) if tenant is not None else customers
        return form

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="DKIM record (TXT at <selector>._domainkey)")
    def dkim_record_shown(self, obj):
        return obj.dkim_record

    def publish_one(self, request, obj, data):
        added = services.publish_records(obj, actor=request.user)
        return f"Published: {', '.join(added)}." if added else "Nothing to publish (no zone of this name, or done)."

    def delete_one(self, request, obj, data):
        services.mail_domain_delete(mail_domain=obj, actor=request.user)
        return self.gone_to_list(request, obj, f"Deleted the mail domain {obj.name}.")


class MailboxForm(ServiceForm):
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        strip=False,
        help_text="Empty keeps the current password. Stored only as a hash.",
    )

    class Meta:
        model = Mailbox
        fields = ["quota_mb", "enabled"]

    tenant_via = "mail_domain"

    def act(self, data, actor):
        changes = self.changed(data, ["quota_mb", "enabled"])
        if data.get("password"):
            changes["password"] = data["password"]
        return services.mailbox_update(mailbox=self.instance, data=changes, actor=actor) if changes else self.instance


class MailboxAddForm(MailboxForm):
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        strip=False,
        help_text="Stored only as a hash (never in clear, never in the audit trail).",
    )

    class Meta:
        model = Mailbox
        fields = ["mail_domain", "local_part", "quota_mb", "enabled"]

    def act(self, data, actor):
        return services.mailbox_create(
            mail_domain=data["mail_domain"],
            local_part=data["local_part"],
            password=data["password"],
            quota_mb=data["quota_mb"],
            enabled=data["enabled"],
            actor=actor,
        )


@admin.register(Mailbox)
class MailboxAdmin(ServiceAdmin):
    list_display = ["address", "quota_mb", "enabled", "tenant"]
    list_filter = ["enabled", "tenant"]
    search_fields = ["local_part", "mail_domain__name"]
    list_select_related = ["mail_domain", "tenant"]
    show_full_result_count = False
    add_form = MailboxAddForm
    form = MailboxForm
    add_fields = ["mail_domain", "local_part", "password", "quota_mb", "enabled"]
    change_fields = ["password", "quota_mb", "enabled"]
    shown_fields = ["address", "mail_domain", "tenant"]
    object_actions = [ObjectAction("delete", "Delete", method="delete_one", confirm=True, style="danger")]

    @admin.display(description="address", ordering="local_part")
    def address(self, box):
        return f"{box.local_part}@{box.mail_domain.name}"

    def recent_jobs(self, obj):
        return "The mail node's sync jobs are listed on the mail domain's node."

    def delete_one(self, request, box, data):
        services.mailbox_delete(mailbox=box, actor=request.user)
        return self.gone_to_list(request, box, f"Deleted the mailbox {box.local_part}@{box.mail_domain.name}.")


class DestinationsField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [a for a in (super().to_python(value) or "").replace(",", " ").split() if a]


class AliasForm(ServiceForm):
    destinations = DestinationsField(help_text="Addresses, one a line.")

    class Meta:
        model = Alias
        fields = ["destinations"]

    tenant_via = "mail_domain"

    def act(self, data, actor):
        changes = self.changed(data, ["destinations"])
        return services.alias_update(alias=self.instance, data=changes, actor=actor) if changes else self.instance


class AliasAddForm(AliasForm):
    class Meta:
        model = Alias
        fields = ["mail_domain", "local_part", "destinations"]

    def act(self, data, actor):
        return services.alias_create(
            mail_domain=data["mail_domain"],
            local_part=data["local_part"],
            destinations=data["destinations"],
            actor=actor,
        )


class MailRowAdmin(ServiceAdmin):
    """A row of a mail domain's configuration (an alias, an autoresponder): no jobs of its own (its
    mail domain's node is synced after each change), and a Delete button."""

    object_actions = [ObjectAction("delete", "Delete", method="delete_one", confirm=True, style="danger")]

    def recent_jobs(self, obj):
        return "The mail node's sync jobs are listed on the mail domain's node."


@admin.register(Alias)
class AliasAdmin(MailRowAdmin):
    list_display = ["local_part", "mail_domain", "destinations", "tenant"]
    search_fields = ["local_part", "mail_domain__name"]
    list_select_related = ["mail_domain", "tenant"]
    list_filter = ["tenant"]
    show_full_result_count = False
    add_form = AliasAddForm
    form = AliasForm
    add_fields = ["mail_domain", "local_part", "destinations"]
    change_fields = ["destinations"]
    shown_fields = ["local_part", "mail_domain", "tenant"]

    def delete_one(self, request, alias, data):
        services.alias_delete(alias=alias, actor=request.user)
        return self.gone_to_list(request, alias, f"Deleted the alias {alias.local_part}@{alias.mail_domain.name}.")


RESPONDER_FIELDS = ["enabled", "subject", "body", "start_date", "end_date", "interval_days"]


class AutoresponderForm(ServiceForm):
    class Meta:
        model = Autoresponder
        fields = RESPONDER_FIELDS

    tenant_via = "mailbox"

    def act(self, data, actor):
        changes = self.changed(data, RESPONDER_FIELDS)
        if not changes:
            return self.instance
        return services.autoresponder_update(autoresponder=self.instance, data=changes, actor=actor)


class AutoresponderAddForm(AutoresponderForm):
    class Meta:
        model = Autoresponder
        fields = ["mailbox", *RESPONDER_FIELDS]

    def act(self, data, actor):
        return services.autoresponder_create(mailbox=data["mailbox"], actor=actor,
                                             **{f: data[f] for f in RESPONDER_FIELDS})  # fmt: skip


@admin.register(Autoresponder)
class AutoresponderAdmin(MailRowAdmin):
    """A mailbox's out-of-office answer, written by the mail service as from the API (the node's mail
    configuration is synced after each change)."""

    list_display = ["mailbox", "enabled", "subject", "start_date", "end_date", "interval_days", "tenant"]
    list_filter = ["enabled", "tenant"]
    search_fields = ["mailbox__local_part", "mailbox__mail_domain__name", "subject"]
    list_select_related = ["mailbox__mail_domain", "tenant"]
    show_full_result_count = False
    add_form = AutoresponderAddForm
    form = AutoresponderForm
    add_fields = ["mailbox", *RESPONDER_FIELDS]
    change_fields = RESPONDER_FIELDS
    shown_fields = ["mailbox", "tenant"]

    def delete_one(self, request, responder, data):
        services.autoresponder_delete(autoresponder=responder, actor=request.user)
        return self.gone_to_list(request, responder, f"Deleted the autoresponder of {responder.mailbox}.")
