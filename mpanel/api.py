"""The /api/v1 router. A module not built yet is absent (404), never a stub."""

from dj_rest_auth.views import UserDetailsView
from django.urls import NoReverseMatch, include, path, re_path, reverse
from django.utils.html import format_html, format_html_join
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import permissions
from rest_framework.routers import APIRootView, DefaultRouter

from apps.accounts.views import (
    LoginView,
    LogoutView,
    PasswordChangeView,
    PasswordResetConfirmView,
    PasswordResetView,
    RegisterView,
    VerifyEmailView,
)
from apps.backups.api import (
    BackupPolicyViewSet,
    BackupRepositoryViewSet,
    DrillViewSet,
    RestoreViewSet,
    SnapshotViewSet,
)
from apps.billing.api import (
    BillingSettingsViewSet,
    CreditNoteViewSet,
    GenericWebhookView,
    InvoiceViewSet,
    PaymentViewSet,
    SavedPaymentMethodViewSet,
    StripeConnectViewSet,
    StripeWebhookView,
    SubscriptionViewSet,
    TenantGenericWebhookView,
    WebhookSecretViewSet,
)
from apps.catalog.api import ProductViewSet, TaxRateViewSet
from apps.catalog.public import PublicCatalogView
from apps.cloudpods.api import CloudPodViewSet
from apps.common.routing import include_indexed
from apps.common.views import DebugView, HealthView
from apps.customers.api import ContactViewSet, CustomerViewSet
from apps.databases.api import DatabaseGrantViewSet, DatabaseServerViewSet, DatabaseUserViewSet, DatabaseViewSet
from apps.dns.api import RecordViewSet, ZoneViewSet
from apps.domains.api import DomainSettingsViewSet, DomainViewSet
from apps.files.api import FileManagerViewSet
from apps.hosting.api import HostingAccountViewSet, TodoViewSet
from apps.jobs.api import ProvisioningViewSet
from apps.mail.api import AliasViewSet, AutoresponderViewSet, MailboxViewSet, MailDomainViewSet
from apps.metrics.api import HostingServerViewSet, IngestView, ServerMetricsViewSet
from apps.names.api import NameDelegationViewSet
from apps.nodes.api import NodeViewSet
from apps.ops.api import OverviewViewSet, PlatformOverviewViewSet
from apps.orders.api import OrderViewSet
from apps.portal.api import (
    PortalInvoiceViewSet,
    PortalLoginView,
    PortalLogoutView,
    PortalMeView,
    PortalOrderViewSet,
    PortalPaymentMethodViewSet,
    PortalServiceViewSet,
    PortalSessionViewSet,
    PortalUserViewSet,
)
from apps.portal.service_api import (
    PortalContactViewSet,
    PortalDatabaseUserViewSet,
    PortalDatabaseViewSet,
    PortalDomainViewSet,
    PortalMailboxViewSet,
    PortalPodViewSet,
)
from apps.security.api import (
    ApiTokenViewSet,
    GuardianViewSet,
    MfaLoginView,
    SecurityEventViewSet,
    SecurityMeViewSet,
    SecurityMyEventViewSet,
    SecurityPolicyViewSet,
    SecuritySessionViewSet,
    ShieldEventViewSet,
    ShieldPolicyViewSet,
)
from apps.ssl.api import CertificateViewSet, SslSettingsViewSet
from apps.tenancy.api import InvitationViewSet, MemberViewSet, MyInvitationViewSet, TenantViewSet, UserViewSet
from apps.tenancy.audit_api import AuditEventViewSet
from apps.websites.api import WebsiteViewSet
from apps.whitelabel.api import BrandLogoViewSet, BrandViewSet, CustomDomainViewSet

from . import browser
from .openapi import MODULES, module_of

# Routes outside the router that a module's row on the root page links to.
ROOT_EXTRA_LINKS = {
    "Authentication": (("rest_login", "auth/login"), ("rest_user_details", "auth/user")),
    "Catalog": (("public-catalog", "products (public)"),),
    "Security": (("security-policy", "security/policy"),),
    "White-label": (("white-label", "enterprise/white-label"), ("white-label-logo", "enterprise/white-label/logo")),
    "Payment webhooks": (
        ("webhook-stripe", "billing/webhooks/stripe"),
        ("webhook-generic", "billing/webhooks/generic"),
    ),
    "System": (("healthz", "healthz"),),
}


class ApiRootView(APIRootView):
    """The mPanel API. Each module below lists its routes; the reference with examples of every
    operation is at /api/v1/docs/ and the OpenAPI document at /api/v1/schema/. Log in (top right) to
    use the API from this browser; a program sends the header Authorization: Bearer <key>."""

    # The entry point a person lands on: it names the routes (as the public schema does) and
    # offers the login; every route it links to asks for credentials itself.
    permission_classes = [permissions.AllowAny]

    def get_view_name(self) -> str:
        return "mPanel API"

    def get_view_description(self, html: bool = False) -> str:
        text = " ".join((self.__doc__ or "").split())
        if not html:
            modules = "; ".join(f"{m.name}: {m.description}" for m in MODULES)
            return f"{text} Modules: {modules}"
        rows = format_html_join(
            "",
            '<tr><th scope="row">{}</th><td>{}</td><td>{}</td></tr>',
            ((m.name, m.description, self._links(m)) for m in MODULES),
        )
        intro = format_html("<p>{}</p>", text)
        return format_html('{}<table class="mp-root-modules" id="api-modules">{}</table>', intro, rows)

    def _links(self, module) -> str:
        links = [(reverse(name), label) for name, label in ROOT_EXTRA_LINKS.get(module.name, ())]
        for prefix, url_name in self.api_root_dict.items():
            found = module_of(prefix)
            if found is not module:
                continue
            try:
                url = reverse(url_name)
            except NoReverseMatch:
                continue  # a nested route (its parent's id is in the URL)
            links.append((url, prefix))
        return format_html_join(" ", '<a href="{}">{}</a>', links)


class Router(DefaultRouter):
    # /billing/invoices and /billing/invoices/ answer the same.
    include_format_suffixes = False
    APIRootView = ApiRootView

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"  # the constructor only knows "/" or ""


router = Router()
router.register("tenants", TenantViewSet, basename="tenant")
router.register(r"tenants/(?P<tenant_pk>[0-9a-fA-F-]{36})/members", MemberViewSet, basename="tenant-member")
router.register(r"tenants/(?P<tenant_pk>[0-9a-fA-F-]{36})/invitations", InvitationViewSet, basename="tenant-invitation")
router.register("invitations", MyInvitationViewSet, basename="invitation")
router.register("users", UserViewSet, basename="user")
router.register("customers", CustomerViewSet, basename="customer")
router.register(r"customers/(?P<customer_pk>[0-9a-fA-F-]{36})/contacts", ContactViewSet, basename="customer-contact")
router.register(
    r"customers/(?P<customer_pk>[0-9a-fA-F-]{36})/portal-users", PortalUserViewSet, basename="customer-portal-user"
)
router.register("portal/services", PortalServiceViewSet, basename="portal-service")
router.register("portal/invoices", PortalInvoiceViewSet, basename="portal-invoice")
router.register("portal/orders", PortalOrderViewSet, basename="portal-order")
router.register("portal/sessions", PortalSessionViewSet, basename="portal-session")
router.register("portal/payment-methods", PortalPaymentMethodViewSet, basename="portal-payment-method")
router.register("portal/pods", PortalPodViewSet, basename="portal-pod")
router.register("portal/mailboxes", PortalMailboxViewSet, basename="portal-mailbox")
router.register("portal/domains", PortalDomainViewSet, basename="portal-domain")
router.register("portal/databases", PortalDatabaseViewSet, basename="portal-database")
router.register("portal/database-users", PortalDatabaseUserViewSet, basename="portal-database-user")
router.register("portal/contacts", PortalContactViewSet, basename="portal-contact")
router.register("audit", AuditEventViewSet, basename="audit")
router.register("ops/provisioning", ProvisioningViewSet, basename="job")
router.register("billing/invoices", InvoiceViewSet, basename="invoice")
router.register("billing/payments", PaymentViewSet, basename="payment")
router.register("billing/payment-methods", SavedPaymentMethodViewSet, basename="saved-payment-method")
router.register("billing/credit-notes", CreditNoteViewSet, basename="credit-note")
router.register("billing/subscriptions", SubscriptionViewSet, basename="subscription")
router.register("orders", OrderViewSet, basename="order")
router.register("billing/products", ProductViewSet, basename="product")
router.register("billing/tax-rates", TaxRateViewSet, basename="tax-rate")
router.register("ops/servers", NodeViewSet, basename="node")
router.register("hosting/servers", HostingServerViewSet, basename="hosting-server")
router.register("hosting/server-metrics", ServerMetricsViewSet, basename="server-metrics")
router.register("cloudpods", CloudPodViewSet, basename="cloudpod")
router.register("ops/platform-overview", PlatformOverviewViewSet, basename="platform-overview")
router.register("ops/overview", OverviewViewSet, basename="ops-overview")
router.register("security/me/sessions", SecuritySessionViewSet, basename="security-session")
router.register("security/me/events", SecurityMyEventViewSet, basename="security-my-event")
router.register("security/me", SecurityMeViewSet, basename="security-me")
router.register("security/tokens", ApiTokenViewSet, basename="security-token")
router.register("security/events", SecurityEventViewSet, basename="security-event")
router.register("security/shield/policies", ShieldPolicyViewSet, basename="shield-policy")
router.register("security/shield/events", ShieldEventViewSet, basename="shield-event")
router.register("guardian", GuardianViewSet, basename="guardian-finding")
router.register("hosting/websites", WebsiteViewSet, basename="website")
router.register("enterprise/ssl", CertificateViewSet, basename="ssl-certificate")
router.register("hosting/accounts", HostingAccountViewSet, basename="hosting-account")
router.register("hosting/todos", TodoViewSet, basename="hosting-todo")
router.register("hosting/files", FileManagerViewSet, basename="hosting-files")
router.register("hosting/dns", ZoneViewSet, basename="dns-zone")
router.register(r"hosting/dns/(?P<zone_pk>[0-9a-fA-F-]{36})/records", RecordViewSet, basename="dns-record")
router.register("hosting/domains", DomainViewSet, basename="domain")
router.register("hosting/name-delegations", NameDelegationViewSet, basename="name-delegation")
router.register("hosting/email/domains", MailDomainViewSet, basename="mail-domain")
router.register(r"hosting/email/domains/(?P<domain_pk>[0-9a-fA-F-]{36})/mailboxes", MailboxViewSet, basename="mailbox")
router.register(r"hosting/email/domains/(?P<domain_pk>[0-9a-fA-F-]{36})/aliases", AliasViewSet, basename="mail-alias")
router.register("hosting/databases/servers", DatabaseServerViewSet, basename="database-server")
router.register("hosting/databases/users", DatabaseUserViewSet, basename="database-user")
router.register("hosting/databases", DatabaseViewSet, basename="database")
router.register(
    r"hosting/databases/(?P<database_pk>[0-9a-fA-F-]{36})/grants", DatabaseGrantViewSet, basename="database-grant"
)
router.register(r"hosting/email/domains/(?P<domain_pk>[0-9a-fA-F-]{36})/autoresponders", AutoresponderViewSet,
                basename="mail-autoresponder")  # fmt: skip
router.register("enterprise/backups/repositories", BackupRepositoryViewSet, basename="backup-repository")
router.register("enterprise/backups/policies", BackupPolicyViewSet, basename="backup-policy")
router.register("enterprise/backups/snapshots", SnapshotViewSet, basename="backup-snapshot")
router.register("enterprise/backups/restores", RestoreViewSet, basename="backup-restore")
router.register("enterprise/backups/drills", DrillViewSet, basename="backup-drill")

router.register("enterprise/white-label/domains", CustomDomainViewSet, basename="whitelabel-domain")

# The browsable API's login and logout: DRF's templates find them by these names.
browser_urls = [
    re_path(r"^login/?$", browser.LoginView.as_view(), name="login"),
    re_path(r"^logout/?$", browser.LogoutView.as_view(), name="logout"),
]

auth_urls = [
    path("browser/", include((browser_urls, "rest_framework"))),
    re_path(r"^login/?$", LoginView.as_view(), name="rest_login"),
    re_path(r"^login/mfa/?$", MfaLoginView.as_view(), name="rest_login_mfa"),
    re_path(r"^logout/?$", LogoutView.as_view(), name="rest_logout"),
    re_path(r"^user/?$", UserDetailsView.as_view(), name="rest_user_details"),
    re_path(r"^password/change/?$", PasswordChangeView.as_view(), name="rest_password_change"),
    re_path(r"^password/reset/?$", PasswordResetView.as_view(), name="rest_password_reset"),
    re_path(r"^password/reset/confirm/?$", PasswordResetConfirmView.as_view(), name="rest_password_reset_confirm"),
    # The link in the reset email; a client reads uid and token from it and posts them to the view above.
    path(
        "password/reset/confirm/<str:uidb64>/<str:token>/",
        TemplateView.as_view(template_name="accounts/password_reset_confirm.html"),
        name="password_reset_confirm",
    ),
    re_path(r"^registration/?$", RegisterView.as_view(), name="rest_register"),
    re_path(r"^registration/verify-email/?$", VerifyEmailView.as_view(), name="rest_verify_email"),
    # The link in the verification email; a client posts its key to verify-email.
    re_path(
        r"^registration/account-confirm-email/(?P<key>[-:\w]+)/$",
        TemplateView.as_view(template_name="accounts/confirm_email.html"),
        name="account_confirm_email",
    ),
]

urlpatterns = [
    path("auth/", include(auth_urls)),
    re_path(r"^__debug/?$", DebugView.as_view(), name="debug"),
    re_path(r"^healthz/?$", HealthView.as_view(), name="healthz"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    re_path(r"^billing/webhooks/stripe/?$", StripeWebhookView.as_view(), name="webhook-stripe"),
    re_path(r"^billing/webhooks/generic/?$", GenericWebhookView.as_view(), name="webhook-generic"),
    re_path(
        r"^billing/webhooks/generic/(?P<slug>[-a-zA-Z0-9_]{1,80})/?$",
        TenantGenericWebhookView.as_view(),
        name="webhook-generic-tenant",
    ),
    re_path(
        r"^domains/settings/?$",
        DomainSettingsViewSet.as_view({"get": "retrieve", "put": "update", "patch": "partial_update"}),
        name="domain-settings",
    ),
    re_path(
        r"^enterprise/ssl/settings/?$",
        SslSettingsViewSet.as_view({"get": "retrieve", "put": "update", "patch": "partial_update"}),
        name="ssl-settings",
    ),
    re_path(
        r"^billing/settings/?$",
        BillingSettingsViewSet.as_view({"get": "retrieve", "put": "update", "patch": "partial_update"}),
        name="billing-settings",
    ),
    re_path(
        r"^billing/settings/webhook-secrets/?$",
        WebhookSecretViewSet.as_view({"get": "retrieve", "post": "create"}),
        name="billing-webhook-secrets",
    ),
    re_path(
        r"^billing/stripe/connect/?$",
        StripeConnectViewSet.as_view({"get": "retrieve", "post": "create", "delete": "destroy"}),
        name="billing-stripe-connect",
    ),
    re_path(r"^hosting/server-metrics/ingest/?$", IngestView.as_view(), name="server-metrics-ingest"),
    # The public catalog, before the router so that no detail route can capture it.
    re_path(r"^products/?$", PublicCatalogView.as_view(), name="public-catalog"),
    # The customer portal's API (apps/portal): portal tokens only.
    re_path(r"^portal/login/?$", PortalLoginView.as_view(), name="portal-login"),
    re_path(r"^portal/logout/?$", PortalLogoutView.as_view(), name="portal-logout"),
    re_path(r"^portal/me/?$", PortalMeView.as_view(), name="portal-me"),
    re_path(r"^billing/products/catalog/public/?$", PublicCatalogView.as_view(), name="public-catalog-billing"),
    re_path(
        r"^security/policy/?$",
        SecurityPolicyViewSet.as_view({"get": "retrieve", "put": "update"}),
        name="security-policy",
    ),
    re_path(
        r"^enterprise/white-label/?$",
        BrandViewSet.as_view({"get": "retrieve", "put": "update", "patch": "partial_update"}),
        name="white-label",
    ),
    re_path(
        r"^enterprise/white-label/nameservers/apply/?$",
        BrandViewSet.as_view({"post": "apply_nameservers"}),
        name="white-label-nameservers-apply",
    ),
    re_path(
        r"^enterprise/white-label/logo/?$",
        BrandLogoViewSet.as_view({"get": "retrieve", "post": "create", "delete": "destroy"}),
        name="white-label-logo",
    ),
    # ~800 routes: resolved by first segment (apps.common.routing).
    include_indexed("", router.urls),
]
