from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html

from apps.common.exceptions import DomainError
from apps.tenancy.admin_base import TenantOwnedAdmin

from . import services
from .models import Node


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


@admin.register(Node)
class NodeAdmin(TenantOwnedAdmin):
    list_display = ["hostname", "transport", "status", "memory", "cpu", "pods", "last_heartbeat_at"]
    list_filter = ["status", "transport"]
    search_fields = ["hostname", "address", "id"]
    readonly_fields = [
        "allocated_vcpu",
        "allocated_memory_mb",
        "allocated_disk_gb",
        "allocated_pods",
        "last_heartbeat_at",
        "reported",
        "last_error",
        "secret_hash",
        "secret_salt",
        "secret_salt_previous",
        "secret_previous_until",
        "tls_fingerprint_next",
        "status_before_offline",
    ]
    show_full_result_count = False
    actions = ["rotate_secret"]

    @admin.action(description="Rotate the agent secret (the old one stays valid for the grace period)",
                  permissions=["operate"])  # fmt: skip
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
        context = {**self.admin_site.each_context(request), "title": "New agent secrets", "opts": self.opts,
                   "rotated": rotated, "changelist_url": request.get_full_path()}  # fmt: skip
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
