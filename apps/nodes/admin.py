"""Nodes in the operators' console: added (the agent's secret shown once), edited (capacity, roles,
status) and their secrets rotated through the same services as the API."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html

from apps.common.admin import status_column
from apps.common.display import when
from apps.common.exceptions import DomainError
from apps.jobs.admin import ServiceAdmin, ServiceForm, shown_once

from . import services
from .models import ROLE_CHOICES, SETTABLE_STATUSES, Node


def bar(used, total) -> str:
    pct = int(100 * float(used) / float(total)) if total else 0
    colour = "#ba2121" if pct >= 90 else "#e0a800" if pct >= 70 else "#417690"
    return format_html(
        '<div title="{} / {}" style="width:110px;background:#eee;border-radius:3px">'
        '<div style="width:{}%;background:{};color:#fff;font-size:10px;padding:0 3px">{}%</div></div>',
        used,
        total,
        min(pct, 100),
        colour,
        pct,
    )


CAPACITY = list(services.CAPACITY)
EDITABLE = ["hostname", "address", "transport", "roles", "status", *CAPACITY, "tls_fingerprint"]


class NodeForm(ServiceForm):
    roles = forms.MultipleChoiceField(
        choices=[(r, r) for r in ROLE_CHOICES], required=False, widget=forms.CheckboxSelectMultiple
    )
    status = forms.ChoiceField(
        choices=[("", "— unchanged —"), *SETTABLE_STATUSES],
        required=False,
        help_text="Active, draining or maintenance. A node goes offline (and back) by itself, from its heartbeats.",
    )

    class Meta:
        model = Node
        fields = EDITABLE

    def clean_hostname(self):
        return self.cleaned_data["hostname"].strip().lower()

    def clean_roles(self):
        return [r for r in ROLE_CHOICES if r in self.cleaned_data["roles"]]

    def spread(self, data: dict) -> dict:
        """The service's shape: the capacity figures together, as the API's serializer sends them."""
        data = dict(data)
        capacity = {k: data.pop(k) for k in CAPACITY if k in data}
        if not data.get("status"):
            data.pop("status", None)
        return {**data, **({"capacity": capacity} if capacity else {})}

    def act(self, data, actor):
        changes = self.changed(data, EDITABLE)
        if not changes:
            return self.instance
        return services.node_update(node=self.instance, data=self.spread(changes), actor=actor)


class NodeAddForm(NodeForm):
    class Meta:
        model = Node
        fields = ["tenant", *EDITABLE]

    def act(self, data, actor):
        fields = {k: data[k] for k in EDITABLE if k in data}
        node, secret = services.node_create(tenant=data["tenant"], data=self.spread(fields), actor=actor)
        self.extra["secret"] = secret
        return node


@admin.register(Node)
class NodeAdmin(ServiceAdmin):
    """Nodes change through their services (capacity never below what is allocated, audit)."""

    list_display = ["hostname", "transport", "status", "memory", "cpu", "pods", "heartbeat", "tenant"]
    list_filter = ["status", "transport", "tenant"]
    search_fields = ["hostname", "address", "id"]
    list_select_related = ["tenant"]
    show_full_result_count = False
    actions = ["rotate_secret"]
    add_form = NodeAddForm
    form = NodeForm
    add_fields = ["tenant", *EDITABLE]
    change_fields = EDITABLE
    shown_fields = [
        "tenant",
        "current_status",
        "allocated_vcpu",
        "allocated_memory_mb",
        "allocated_disk_gb",
        "allocated_pods",
        "heartbeat",
        "reported",
        "last_error",
        "secret_previous_until",
        "tls_fingerprint_next",
    ]

    def after_add(self, request, obj, extra):
        if not extra.get("secret"):
            return None
        return shown_once(
            self,
            request,
            obj,
            title="The node agent's secret",
            explanation="Write it into the node's secret file (MPANEL_AGENT_SECRET_FILE).",
            values=[("Node", obj.hostname), ("Secret", extra["secret"])],
        )

    def recent_jobs(self, obj):
        return "Jobs run on this node are listed under Jobs."

    current_status = status_column(description="current status")

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def heartbeat(self, node):
        return when(node.last_heartbeat_at)

    @admin.action(
        description="Rotate the agent secret (the old one stays valid for the grace period)", permissions=["operate"]
    )
    def rotate_secret(self, request, queryset):
        """The new secrets are shown on the answer page itself, this once: never in a message (the
        message store may be a cookie) nor in the audit log."""
        rotated = []
        for node in queryset:
            try:
                secret = services.node_rotate_secret(node=node, actor=request.user)
            except DomainError as exc:
                self.message_user(request, f"{node}: {exc.message}", messages.WARNING)
                continue
            node.refresh_from_db()
            rotated.append({"node": node, "secret": secret, "until": node.secret_previous_until})
        context = {
            **self.admin_site.each_context(request),
            "title": "New agent secrets",
            "opts": self.opts,
            "rotated": rotated,
            "changelist_url": request.get_full_path(),
        }
        return TemplateResponse(request, "admin/nodes/rotated_secrets.html", context)  # never cached (admin views)

    @admin.display(description="memory")
    def memory(self, node):
        return bar(node.allocated_memory_mb, node.memory_mb)

    @admin.display(description="vCPU")
    def cpu(self, node):
        return bar(node.allocated_vcpu, node.vcpu)

    @admin.display(description="pods")
    def pods(self, node):
        return bar(node.allocated_pods, node.max_pods)
