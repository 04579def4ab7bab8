"""Websites in the operators' console: created, edited, suspended, resumed, re-synced and deleted
from the admin through the same services as the API (hostname claims, placement, jobs, audit)."""

from django import forms
from django.contrib import admin

from apps.common.admin import ObjectAction, ReadOnlyAdmin, apply_each, confirm_first
from apps.common.display import when
from apps.customers.models import Customer
from apps.jobs.admin import ServiceAdmin, ServiceForm, operating, retry_action, tenant_from
from apps.nodes.admin_base import NodeChoiceMixin

from . import services
from .models import Website, WebsiteDomain, WebsiteStatus
from .validators import PHP_VERSIONS

# What an operator may change on a site, as the API's PATCH (the node and the system user are fixed).
SETTINGS = [
    "customer",
    "document_root",
    "php_version",
    "https",
    "redirect_https",
    "www_redirect",
    "redirects",
    "error_pages",
]


class HostnamesField(forms.CharField):
    """Aliases, one hostname a line (or separated by commas or spaces)."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [name for name in text.replace(",", " ").split() if name]


def php_choices() -> list[tuple[str, str]]:
    return [("", "None (a static site)"), *((v, f"PHP {v}") for v in PHP_VERSIONS)]


class WebsiteForm(ServiceForm):
    aliases = HostnamesField(required=False, help_text="Other hostnames of the site, one a line.")
    php_version = forms.ChoiceField(choices=php_choices, required=False)
    redirects = forms.JSONField(required=False, initial=list, help_text='e.g. [{"from": "/old", "to": "/new"}]')
    error_pages = forms.JSONField(required=False, initial=dict, help_text='e.g. {"404": "/404.html"}')

    class Meta:
        model = Website
        fields = ["primary_domain", "aliases", *SETTINGS]

    def clean_redirects(self):
        return self.cleaned_data.get("redirects") or []

    def clean_error_pages(self):
        return self.cleaned_data.get("error_pages") or {}

    def act(self, data, actor):
        changes = self.changed(data, ["primary_domain", "aliases", *SETTINGS])
        if not changes:
            return self.instance
        return services.website_update(website=self.instance, data=changes, actor=actor)


class WebsiteAddForm(WebsiteForm):
    class Meta:
        model = Website
        fields = ["tenant", "primary_domain", "aliases", "node", *SETTINGS]

    def act(self, data, actor):
        settings = {key: data[key] for key in SETTINGS if key in data}
        return services.website_create(
            tenant=data["tenant"],
            primary_domain=data["primary_domain"],
            aliases=data.get("aliases") or [],
            node=data.get("node"),
            actor=actor,
            **settings,
        )


@admin.register(Website)
class WebsiteAdmin(NodeChoiceMixin, ServiceAdmin):
    """Websites change only through their services (validation, jobs, audit): the add and change
    pages, the buttons on a site's page and the list's actions call them."""

    node_role, node_active_only = "web", True
    node_automatic = "Automatic placement (the web node with the fewest sites)"

    list_display = ["primary_domain", "status", "node", "php_version", "https", "created", "tenant"]
    list_filter = ["status", "https", "tenant"]
    search_fields = ["primary_domain", "id", "site_id"]
    list_select_related = ["node", "tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["suspend_sites", "resume_sites", "delete_sites"]
    add_form = WebsiteAddForm
    form = WebsiteForm
    add_fields = ["tenant", "primary_domain", "aliases", "node", *SETTINGS]
    change_fields = ["primary_domain", "aliases", *SETTINGS]
    shown_fields = [
        "tenant",
        "status",
        "node",
        "site_id",
        "system_user",
        "certificate",
        "last_error",
        "created",
        "deleted",
    ]
    object_actions = [
        ObjectAction(
            "suspend",
            "Suspend",
            method="suspend_one",
            show=lambda s: s.status in (WebsiteStatus.ACTIVE, WebsiteStatus.PENDING),
        ),
        ObjectAction("resume", "Resume", method="resume_one", show=lambda s: s.status == WebsiteStatus.SUSPENDED),
        ObjectAction(
            "resync",
            "Resync",
            method="resync_one",
            show=lambda s: s.status in (WebsiteStatus.ACTIVE, WebsiteStatus.SUSPENDED, WebsiteStatus.ERROR),
            help="Write the site's configuration to its node again.",
        ),
        retry_action,
        ObjectAction(
            "delete",
            "Delete",
            method="delete_one",
            confirm=True,
            style="danger",
            show=lambda s: s.status not in (WebsiteStatus.DELETING, WebsiteStatus.DELETED),
            help="A job removes the vhost; the files go after the grace period.",
        ),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        tenant = obj.tenant if obj is not None else tenant_from(request)
        fields = form.base_fields
        customers = Customer.all_tenants.all()
        if "customer" in fields:
            fields["customer"].queryset = customers.filter(tenant=tenant) if tenant is not None else customers
        if "tenant" in fields and tenant is not None:
            fields["tenant"].initial = tenant.pk
        return form

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="created", ordering="created_at")
    def created(self, site):
        return when(site.created_at)

    @admin.display(description="deleted")
    def deleted(self, site):
        return when(site.deleted_at)

    # --- buttons on the site's page (the same services as the API) ------------------------------
    def suspend_one(self, request, site, data):
        services.website_suspend(website=site, actor=request.user)
        return f"Suspending {site.primary_domain}: it will answer 503 with the suspension page."

    def resume_one(self, request, site, data):
        services.website_resume(website=site, actor=request.user)
        return f"Resuming {site.primary_domain}."

    def resync_one(self, request, site, data):
        services.website_resync(website=site, actor=request.user)
        return f"Writing {site.primary_domain}'s configuration to its node again."

    def delete_one(self, request, site, data):
        services.website_delete(website=site, actor=request.user)
        return f"Deleting {site.primary_domain}: a job removes its vhost; its files go after the grace period."

    # --- the list's actions -------------------------------------------------------------------
    def _each(self, request, queryset, fn, verb):
        def one(obj):
            with operating(obj.tenant):
                fn(website=obj, actor=request.user)

        apply_each(self, request, queryset, one, verb, "website(s)")

    @admin.action(description="Suspend the selected websites (503 page)", permissions=["operate"])
    def suspend_sites(self, request, queryset):
        self._each(request, queryset, services.website_suspend, "Suspending")

    @admin.action(description="Resume the selected suspended websites", permissions=["operate"])
    def resume_sites(self, request, queryset):
        self._each(request, queryset, services.website_resume, "Resuming")

    @admin.action(description="Delete the selected websites (a job removes each vhost)", permissions=["operate"])
    @confirm_first
    def delete_sites(self, request, queryset):
        self._each(request, queryset, services.website_delete, "Deleting")


@admin.register(WebsiteDomain)
class WebsiteDomainAdmin(ReadOnlyAdmin):
    """A site's hostnames: written by the website's services (edit them on the site's page)."""

    list_display = ["name", "website", "is_primary", "tenant"]
    list_filter = ["is_primary", "tenant"]
    search_fields = ["name"]
    list_select_related = ["website", "tenant"]
    show_full_result_count = False
