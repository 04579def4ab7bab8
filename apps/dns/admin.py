"""DNS in the operators' console: zones made (empty, from a template or from a zone file), their SOA
timers edited, zone files imported, records added, edited and deleted: every write through the
same services as the API (validation by the node's own rules, the serial, the push job, audit)."""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from apps.common.admin import ObjectAction
from apps.common.display import when
from apps.jobs.admin import ServiceAdmin, ServiceForm, retry_action
from apps.nodes.admin_base import NodeChoiceMixin
from apps.nodes.models import Node

from . import services, templates
from .models import Record, Zone, ZoneStatus

SOA = services.SETTABLE


class ZoneAddForm(ServiceForm):
    name = forms.CharField(max_length=253, help_text="The domain, e.g. example.com.")
    node = forms.ModelChoiceField(
        Node.all_tenants.none(), required=False, empty_label="Automatic (the first active DNS node)"
    )
    template = forms.ChoiceField(
        required=False, choices=lambda: [("", "No records"), *((t, t) for t in sorted(templates.TEMPLATES))]
    )
    ipv4 = forms.GenericIPAddressField(protocol="IPv4", required=False, help_text="For the website templates.")
    ipv6 = forms.GenericIPAddressField(protocol="IPv6", required=False)
    mail_host = forms.CharField(required=False, help_text="For the mail templates, e.g. mail.example.com.")
    zone_file = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}),
        required=False,
        help_text="Or paste an RFC 1035 zone file: its records fill the zone.",
    )

    class Meta:
        model = Zone
        fields = ["tenant", "name", "node"]

    def act(self, data, actor):
        variables = {key: data.get(key) for key in ("ipv4", "ipv6", "mail_host") if data.get(key)}
        return services.zone_create(
            tenant=data["tenant"],
            name=data["name"],
            node=data.get("node"),
            template=data.get("template") or None,
            template_vars=variables,
            zone_file=data.get("zone_file") or None,
            actor=actor,
        )


class ZoneForm(ServiceForm):
    class Meta:
        model = Zone
        fields = SOA

    def act(self, data, actor):
        changes = self.changed(data, SOA)
        return services.zone_update(zone=self.instance, data=changes, actor=actor) if changes else self.instance


class ImportForm(forms.Form):
    zone_file = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 14, "cols": 90}),
        help_text="An RFC 1035 master file; the SOA's timers are taken, its serial is not.",
    )
    replace = forms.BooleanField(required=False, initial=True, help_text="Drop the zone's current records first.")


@admin.register(Zone)
class ZoneAdmin(NodeChoiceMixin, ServiceAdmin):
    """Zones change through their services: the add and change pages, and the buttons on a zone's page."""

    node_role = "dns"

    list_display = ["name", "status", "serial", "served_serial", "node", "created", "tenant"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "id"]
    list_select_related = ["node", "tenant"]
    show_full_result_count = False
    add_form = ZoneAddForm
    form = ZoneForm
    add_fields = ["tenant", "name", "node", "template", "ipv4", "ipv6", "mail_host", "zone_file"]
    change_fields = SOA
    shown_fields = ["tenant", "status", "node", "serial", "served_serial", "records_table", "created"]
    object_actions = [
        ObjectAction(
            "import",
            "Import a zone file",
            method="import_one",
            form=ImportForm,
            show=lambda z: z.status != ZoneStatus.DELETING,
            help="Fill the zone from an RFC 1035 zone file (checked whole before anything changes).",
        ),
        retry_action,
        ObjectAction(
            "delete",
            "Delete",
            method="delete_one",
            confirm=True,
            style="danger",
            show=lambda z: z.status != ZoneStatus.DELETING,
            help="A job withdraws the zone from its DNS node, then deletes it and its records.",
        ),
    ]

    @admin.display(description="created", ordering="created_at")
    def created(self, zone):
        return when(zone.created_at)

    @admin.display(description="records")
    def records_table(self, zone):
        rows = list(zone.records.order_by("name", "type", "content"))
        add = reverse("admin:dns_record_add") + f"?zone={zone.pk}"
        body = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:dns_record_change", args=[r.pk]),
                    r.name,
                    r.type,
                    r.ttl or f"{zone.default_ttl} (zone)",
                    r.content,
                )
                for r in rows
            ),
        )
        return format_html(
            '<table class="related-rows" id="zone-records"><thead><tr><th>Name</th><th>Type</th>'
            "<th>TTL</th><th>Content</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}" class="addlink">Add a record</a></p>',
            body,
            add,
        )

    def import_one(self, request, zone, data):
        services.zone_import(zone=zone, zone_file=data["zone_file"], replace=data["replace"], actor=request.user)
        return f"Imported the zone file into {zone.name}; a job pushes it to the DNS node."

    def delete_one(self, request, zone, data):
        services.zone_delete(zone=zone, actor=request.user)
        return f"Deleting {zone.name}: a job withdraws it from the DNS node, then deletes it."


class RecordForm(ServiceForm):
    class Meta:
        model = Record
        fields = ["name", "type", "ttl", "content"]

    tenant_via = "zone"

    def act(self, data, actor):
        changes = self.changed(data, ["name", "type", "ttl", "content"])
        return services.record_update(record=self.instance, data=changes, actor=actor) if changes else self.instance


class RecordAddForm(RecordForm):
    class Meta:
        model = Record
        fields = ["zone", "name", "type", "ttl", "content"]

    def act(self, data, actor):
        return services.record_create(
            zone=data["zone"],
            name=data["name"],
            type=data["type"],
            ttl=data.get("ttl"),
            content=data["content"],
            actor=actor,
        )


@admin.register(Record)
class RecordAdmin(ServiceAdmin):
    """Records: each add, edit and delete bumps the zone's serial and pushes it (the services)."""

    list_display = ["name", "type", "ttl", "content", "zone", "tenant"]
    list_filter = ["type", "tenant"]
    search_fields = ["name", "content", "zone__name"]
    list_select_related = ["zone", "tenant"]
    show_full_result_count = False
    add_form = RecordAddForm
    form = RecordForm
    add_fields = ["zone", "name", "type", "ttl", "content"]
    change_fields = ["name", "type", "ttl", "content"]
    shown_fields = ["zone", "tenant"]
    object_actions = [
        ObjectAction(
            "delete",
            "Delete",
            method="delete_one",
            confirm=True,
            style="danger",
            help="Delete this record (the zone is pushed again).",
        ),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "zone" in form.base_fields:
            form.base_fields["zone"].queryset = Zone.all_tenants.exclude(status=ZoneStatus.DELETING)
        return form

    def recent_jobs(self, obj):
        return format_html(
            '<p>The zone\'s jobs are on <a href="{}">its page</a>.</p>',
            reverse("admin:dns_zone_change", args=[obj.zone_id]),
        )

    def delete_one(self, request, record, data):
        zone_id = record.zone_id
        services.record_delete(record=record, actor=request.user)
        self.message_user(request, f"Deleted {record.name} {record.type}; the zone is pushed again.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:dns_zone_change", args=[zone_id]))
