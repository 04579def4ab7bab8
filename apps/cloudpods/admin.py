"""CloudPods in the operators' console: created, renamed, linked, resized, suspended, resumed and
deleted through the same services as the API (capacity, quota, jobs, audit)."""

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from apps.billing.models import Subscription, SubscriptionStatus
from apps.common.admin import ObjectAction, apply_each, confirm_first
from apps.common.display import when
from apps.jobs.admin import ServiceAdmin, ServiceForm, operating, retry_action, tenant_from
from apps.nodes.admin_base import NodeChoiceMixin
from apps.nodes.models import Node
from apps.tenancy.admin_base import TenantOwnedAdmin
from apps.tenancy.models import Tenant

from . import plans, services
from .models import CloudPod, PodStatus, TenantQuota
from .serializers import NAME_RE


def plan_choices() -> list[tuple[str, str]]:
    return [
        (p.name, f"{p.name}: {p.vcpu} vCPU, {p.memory_mb} MB memory, {p.disk_gb} GB disk")
        for p in plans.plans().values()
    ]


def image_choices() -> list[tuple[str, str]]:
    return [(name, spec.get("description") or name) for name, spec in plans.images().items()]


class NodeChoice(forms.ModelChoiceField):
    def label_from_instance(self, node: Node) -> str:
        return f"{node.hostname} ({node.tenant.name}): {node.free_memory_mb} MB and {node.free_pods} pod slot(s) free"


class SubscriptionChoice(forms.ModelChoiceField):
    def label_from_instance(self, sub: Subscription) -> str:
        return f"{sub.customer.name}: {sub.product.name} x{sub.quantity} ({sub.get_status_display()})"


def subscription_field(tenant: Tenant | None) -> SubscriptionChoice:
    subs = Subscription.all_tenants.exclude(status=SubscriptionStatus.CANCELLED).select_related("customer", "product")
    if tenant is not None:
        subs = subs.filter(tenant=tenant)
    return SubscriptionChoice(subs, required=False, help_text="The billing subscription this pod is sold under.")


class PodAddForm(ServiceForm):
    name = forms.CharField(max_length=63, help_text="A hostname label: lower-case letters, digits and hyphens.")
    plan = forms.ChoiceField(choices=plan_choices)
    image = forms.ChoiceField(choices=image_choices)
    node = NodeChoice(
        Node.all_tenants.none(), required=False, empty_label="Automatic placement (the node with the most free memory)"
    )
    subscription_link = SubscriptionChoice(Subscription.all_tenants.none(), required=False)

    class Meta:
        model = CloudPod
        fields = ["tenant", "name", "plan", "image", "node"]

    def clean_name(self):
        name = self.cleaned_data["name"].strip().lower()
        if not NAME_RE.match(name):  # the API's own rule (serializers.py)
            raise forms.ValidationError("Use 1-63 lower-case letters, digits and hyphens (a hostname label).")
        return name

    def act(self, data, actor):
        sub = data.get("subscription_link")
        return services.pod_create(
            tenant=data["tenant"],
            name=data["name"],
            plan=data["plan"],
            image=data["image"],
            node=data.get("node"),
            subscription=str(sub.pk) if sub else None,
            actor=actor,
        )


class PodChangeForm(ServiceForm):
    subscription_link = SubscriptionChoice(Subscription.all_tenants.none(), required=False)

    class Meta:
        model = CloudPod
        fields = ["name"]

    def act(self, data, actor):
        data = dict(data)
        sub = data.pop("subscription_link", None)
        changes = self.changed(data, ["name"])
        if "subscription_link" in self.changed_data:
            changes["subscription"] = str(sub.pk) if sub else None
        if not changes:
            return self.instance
        return services.pod_update(pod=self.instance, data=changes, actor=actor)


class ResizeForm(forms.Form):
    plan = forms.ChoiceField(choices=plan_choices, help_text="The node's capacity and the tenant's quota are checked.")


@admin.register(CloudPod)
class CloudPodAdmin(NodeChoiceMixin, ServiceAdmin):
    """Pods change only through their services (capacity, jobs, audit): the add and change pages,
    the buttons on a pod's page and the list's actions all call them."""

    node_role, node_active_only = "pods", True

    list_display = ["name", "status", "plan", "node", "memory_mb", "subscription_shown", "created", "tenant"]
    list_filter = ["status", "plan", "tenant"]
    search_fields = ["name", "id", "container_id", "subscription"]
    list_select_related = ["node", "tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["suspend_pods", "resume_pods", "delete_pods"]
    add_form = PodAddForm
    form = PodChangeForm
    add_fields = ["tenant", "name", "plan", "image", "node", "subscription_link"]
    change_fields = ["name", "subscription_link"]
    shown_fields = [
        "tenant",
        "status",
        "plan",
        "image",
        "node",
        "vcpu",
        "memory_mb",
        "disk_gb",
        "pids",
        "container_id",
        "last_error",
        "created",
        "deleted",
    ]
    object_actions = [
        ObjectAction("suspend", "Suspend", method="suspend_one", show=lambda p: p.status == PodStatus.RUNNING),
        ObjectAction("resume", "Resume", method="resume_one", show=lambda p: p.status == PodStatus.SUSPENDED),
        ObjectAction(
            "resize",
            "Resize",
            method="resize_one",
            form=ResizeForm,
            initial=lambda p: {"plan": p.plan},
            show=lambda p: p.status == PodStatus.RUNNING,
            help="Move the pod to another plan: the container is updated in place.",
        ),
        retry_action,
        ObjectAction(
            "delete",
            "Delete",
            method="delete_one",
            confirm=True,
            style="danger",
            show=lambda p: p.status not in (PodStatus.DELETING, PodStatus.DELETED),
            help="A job removes the container and frees its node's capacity.",
        ),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        tenant = obj.tenant if obj is not None else tenant_from(request)
        fields = form.base_fields
        fields["subscription_link"] = subscription_field(tenant)
        if obj is not None and obj.subscription:
            fields["subscription_link"].initial = obj.subscription
        if "tenant" in fields and tenant is not None:
            fields["tenant"].initial = tenant.pk
        return form

    def get_changeform_initial_data(self, request):
        return {k: v for k, v in super().get_changeform_initial_data(request).items() if k != "subscription_link"}

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="created", ordering="created_at")
    def created(self, pod):
        return when(pod.created_at)

    @admin.display(description="deleted")
    def deleted(self, pod):
        return when(pod.deleted_at)

    @admin.display(description="subscription")
    def subscription_shown(self, pod):
        if not pod.subscription:
            return "—"
        sub = Subscription.all_tenants.select_related("customer", "product").filter(pk=pod.subscription).first()
        if sub is None:
            return pod.subscription
        return format_html(
            '<a href="/admin/billing/subscription/{}/change/">{}: {}</a>', sub.pk, sub.customer.name, sub.product.name
        )

    # --- buttons on the pod's page (the same services as the API) ---------------------------------
    def suspend_one(self, request, pod, data):
        services.pod_suspend(pod=pod, actor=request.user)
        return f"Suspending {pod.name}: a job freezes its processes."

    def resume_one(self, request, pod, data):
        services.pod_resume(pod=pod, actor=request.user)
        return f"Resuming {pod.name}."

    def resize_one(self, request, pod, data):
        services.pod_resize(pod=pod, plan=data["plan"], actor=request.user)
        return f"Resizing {pod.name} to {data['plan']}."

    def delete_one(self, request, pod, data):
        services.pod_delete(pod=pod, actor=request.user)
        return f"Deleting {pod.name}: a job removes its container."

    # --- the list's actions -----------------------------------------------------------------
    def _each(self, request, queryset, fn, verb):
        def one(obj):
            with operating(obj.tenant):
                fn(pod=obj, actor=request.user)

        apply_each(self, request, queryset, one, verb, "pod(s)")

    @admin.action(description="Suspend the selected running pods", permissions=["operate"])
    def suspend_pods(self, request, queryset):
        self._each(request, queryset, services.pod_suspend, "Suspending")

    @admin.action(description="Resume the selected suspended pods", permissions=["operate"])
    def resume_pods(self, request, queryset):
        self._each(request, queryset, services.pod_resume, "Resuming")

    @admin.action(description="Delete the selected pods (a job removes each container)", permissions=["operate"])
    @confirm_first
    def delete_pods(self, request, queryset):
        self._each(request, queryset, services.pod_delete, "Deleting")


@admin.register(TenantQuota)
class TenantQuotaAdmin(TenantOwnedAdmin):
    """Operators raise or lower one tenant's pod limits; tenants only read them (GET /cloudpods/quota)."""

    list_display = ["tenant", "max_pods", "max_memory_mb", "note", "updated_at"]
    search_fields = ["tenant__name", "tenant__slug", "note"]
