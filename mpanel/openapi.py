"""What the OpenAPI document says beyond what the views say about themselves, in one place.

- ``MODULES``: the API's modules by URL prefix, with a short description each. The schema's tags (one
  per module, assigned here from each operation's path) and the browsable API's root both read it, so
  a route under a new prefix shows up under its module without editing any view.
- ``DESCRIPTION``: the document's introduction, including how "Authorize" works.
- ``postprocess``: the drf-spectacular postprocessing hook (``SPECTACULAR_SETTINGS``): tags, realistic
  request examples keyed by request component (``REQUEST_EXAMPLES``), response examples of every write
  built from them, and error examples in the error format of ``apps.common.exceptions``.

tests/test_schema.py checks that every write's request example validates against its own schema and
that every error answer has an example in our format.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

API = "/api/v1/"


@dataclass(frozen=True)
class Module:
    name: str
    prefixes: tuple[str, ...]  # URL prefixes under /api/v1/
    description: str


MODULES: tuple[Module, ...] = (
    Module("Authentication", ("auth",), "Log in (with the two-factor step), log out, register, reset a password."),
    Module(
        "Tenants and members",
        ("tenants", "invitations", "users"),
        "Your tenants, their members and roles, and invitations to join one.",
    ),
    Module("Customers", ("customers",), "The people and companies a tenant bills, and their contacts."),
    Module(
        "Invoices and payments",
        ("billing/invoices", "billing/payments", "billing/payment-methods", "billing/credit-notes"),
        "Invoices from draft to paid, their PDFs, payments, customers' saved cards, refunds and credit notes.",
    ),
    Module(
        "Subscriptions",
        ("billing/subscriptions",),
        "Recurring services billed every cycle: change with proration, suspend, resume, cancel, report usage.",
    ),
    Module(
        "Catalog",
        ("billing/products", "billing/tax-rates", "products"),
        "Products with their prices per currency and cycle, bundles, tax rates; the public catalog.",
    ),
    Module(
        "Customer portal",
        ("portal",),
        "For a tenant's own storefront: its customers log in with portal tokens and see their services, "
        "invoices (with a payment link) and orders, cancel or change a service (its proration shown first). "
        "Staff credentials are refused here.",
    ),
    Module(
        "Customer portal: what services run",
        (
            "portal/pods",
            "portal/mailboxes",
            "portal/domains",
            "portal/databases",
            "portal/database-users",
            "portal/contacts",
        ),
        "The portal API's view of what a customer's services run (pods, mailboxes, domains, databases) and "
        "the customer's contacts, with what the customer may do to them. Portal tokens only.",
    ),
    Module("Orders", ("orders",), "A customer's order of products, from checkout to the services it provisions."),
    Module("Payment webhooks", ("billing/webhooks",), "Signed events from Stripe or a generic payment provider."),
    Module(
        "Billing settings",
        ("billing/settings", "billing/stripe"),
        "Numbering, terms, dunning, currencies and payment methods; the tenant's Stripe account and webhook secrets.",
    ),
    Module("CloudPods", ("cloudpods",), "Isolated containers on your nodes: create, resize, suspend, resume, delete."),
    Module(
        "Hosting accounts",
        ("hosting/accounts", "hosting/todos"),
        "Customers' hosting plans made real: their limits and usage; the staff's to-dos (services sold, "
        "reconciliation findings).",
    ),
    Module(
        "Websites",
        ("hosting/websites",),
        "Virtual hosts on a web node: domains and aliases, HTTPS, PHP version, redirects, suspend and resume.",
    ),
    Module(
        "SSL certificates",
        ("enterprise/ssl",),
        "Certificates from the ACME CA (HTTP-01 or DNS-01) or uploaded: issue, renew, revoke, download.",
    ),
    Module("Files", ("hosting/files",), "A website's files: list, read, write, upload, move, compress and extract."),
    Module("DNS", ("hosting/dns",), "Zones and their records, served by the nodes' name servers; zone file import."),
    Module(
        "Domains",
        ("hosting/domains", "domains/settings"),
        "Registered domains: registration, renewal, nameservers, ownership checks and transfer out.",
    ),
    Module(
        "Name delegations",
        ("hosting/name-delegations",),
        "Lend one of your domain names to another tenant, so it may host it.",
    ),
    Module("Email", ("hosting/email",), "Mail domains, mailboxes, aliases and forwarders, vacation replies."),
    Module(
        "Databases",
        ("hosting/databases",),
        "Database servers, databases, their users and grants (MySQL/MariaDB, PostgreSQL).",
    ),
    Module(
        "Servers and metrics",
        ("hosting/servers", "hosting/server-metrics"),
        "Hosting servers' health and their CPU, memory, disk and network metrics.",
    ),
    Module("Nodes", ("ops/servers",), "The machines that run pods, websites, DNS, mail and databases (operators)."),
    Module(
        "Jobs", ("ops/provisioning",), "Every change to infrastructure as a job: its status, errors, retry and cancel."
    ),
    Module("Overview", ("ops/overview", "ops/platform-overview"), "Dashboards: a tenant's figures, the platform's."),
    Module(
        "Security",
        ("security",),
        "Your sessions, two-factor authentication, API tokens, the tenant's security policy, Shield (WAF).",
    ),
    Module("Guardian", ("guardian",), "Security findings on your hosting: what is exposed or outdated, and the fix."),
    Module(
        "White-label",
        ("enterprise/white-label",),
        "Your brand as your customers see it (name, logo, colours, legal details) and custom portal domains.",
    ),
    Module(
        "Backups",
        ("enterprise/backups",),
        "Restic repositories, backup policies, snapshots per resource, restores, file downloads and restore drills.",
    ),
    Module("Audit", ("audit",), "Who changed what, when and from where: every change of the tenant."),
    Module("System", ("healthz", "__debug"), "Health of the panel and its dependencies, for monitoring."),
)


def module_of(path: str) -> Module | None:
    """The module of an API path (``/api/v1/hosting/dns/…`` or ``hosting/dns``): longest prefix wins."""
    relative = path.removeprefix(API).lstrip("/")
    best: tuple[int, Module | None] = (-1, None)
    for module in MODULES:
        for prefix in module.prefixes:
            if (relative == prefix or relative.startswith(prefix + "/")) and len(prefix) > best[0]:
                best = (len(prefix), module)
    return best[1]


DESCRIPTION = """\
Multi-tenant control panel and billing platform for hosting businesses: customers, invoices and
subscriptions, CloudPods, websites, DNS, domains, email and databases.

## Authorize

1. Log in: `POST /api/v1/auth/login/` with `{"email", "password"}` answers `{"key": "…"}`. When the account
   has two-factor authentication it answers `{"mfa_required": true, "mfa_token": "…"}` instead: send
   `{"mfa_token", "code"}` (the 6 digits of the authenticator app, or a recovery code) to
   `POST /api/v1/auth/login/mfa/` for the key. A program uses a personal API token instead
   (`mp_…`, made under *Security*), bound to one tenant and a maximum role.
2. Press **Authorize**, choose `bearerAuth` and paste the key (without the word *Bearer*): every request
   then carries `Authorization: Bearer <key>`. `POST /api/v1/auth/logout/` revokes it.
3. Choose the tenant: a user who belongs to several sends `X-Tenant-ID: <tenant id>` (the ids are in
   `GET /api/v1/tenants/`); with one tenant, or an API token, it may be left out.

Logged in on the browsable API (`/api/v1/`, *Log in* in its header), this page uses that browser session
too (`browserSession`), with its CSRF token.

## Conventions

Lists are paged (`?page=`, `?page_size=` up to 200) and answer `{"count", "next", "previous", "results"}`.
Money and other decimals are strings (`"19.99"`) and always come with their currency. Errors answer
`{"detail": "…", "code": "…"}`, or `{"field": ["message"]}` for invalid input. A POST may carry an
`Idempotency-Key`: a repeat answers the first response again.
"""

# --- examples ---------------------------------------------------------------------------------------

TENANT = "5d0c7b1e-2a9f-4e63-8c41-0b7e9f3a6d25"
CUSTOMER = "3f6c2a8e-5b1d-4c7a-9e2f-8d4b6a1c0e57"
PRODUCT = "a1d4e7b2-6c3f-4a8e-b5d9-2f7c1e4a8b60"
PRODUCT_2 = "b8e2f0c3-1d7a-4b96-9c3e-5a4d2f1b7e08"
NODE = "7c2e9a41-3b6d-4f8a-a1c5-9e0d2b7f4c83"
INVOICE_LINE = "e4b9c2d7-8a1f-4e3c-b6d0-7f2a9c5e1b34"
SERVER = "c5a8e1f4-7b2d-4c9e-a3f6-1d8b4e7a2c90"
DB_USER = "d2f7b4a9-5e1c-4a8d-b7e3-6c0f9a2d5b18"
MAILBOX = "f1a6d3c8-2e9b-4d7f-a5c0-8b3e6f1a4d72"
USER = "9b3e6a1d-4c8f-4e2a-b7d5-3a0c8e6f1b49"
ID = "0e8d4c2a-7f1b-4a5e-9c3d-6b2f8e4a1c07"  # the id of the object an example answers

REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    # Authentication and accounts
    "LoginRequest": {"email": "jana.novak@zephyr-widgets.example", "password": "correct-horse-battery-staple"},
    "MfaLoginRequest": {"mfa_token": "eyJjIjoiN2YzYTkxZDIifQ:1u2Xyz:Qm9vdHN0cmFw", "code": "492817"},
    "RegisterRequest": {
        "email": "jana.novak@zephyr-widgets.example",
        "password1": "correct-horse-battery-staple",
        "password2": "correct-horse-battery-staple",
        "full_name": "Jana Novak",
    },
    "VerifyEmailRequest": {"key": "MQ:1u2Xyz:verify-4f9c1e"},
    "PasswordChangeRequest": {
        "old_password": "correct-horse-battery-staple",
        "new_password1": "plum-orbit-lantern-42",
        "new_password2": "plum-orbit-lantern-42",
    },
    "PasswordResetRequest": {"email": "jana.novak@zephyr-widgets.example"},
    "PasswordResetConfirmRequest": {
        "new_password1": "plum-orbit-lantern-42",
        "new_password2": "plum-orbit-lantern-42",
        "uid": "MQ",
        "token": "c4x9k2-8f1e3b7a6d2c9e0f4a1b",
    },
    "UserRequest": {"full_name": "Jana Novak"},
    "MyPasswordChangeRequest": {
        "old_password": "correct-horse-battery-staple",
        "new_password": "plum-orbit-lantern-42",
    },
    "CodeRequest": {"code": "492817"},
    "ReauthRequest": {"code": "492817"},
    # Tenants
    "TenantRequest": {"name": "Zephyr Hosting", "default_currency": "EUR", "country": "DE"},
    "MemberCreateRequest": {"email": "lukas.weber@zephyr-widgets.example", "role": "BILLING"},
    "PatchedMemberUpdateRequest": {"role": "ADMIN"},
    "AcceptInvitationRequest": {"token": "inv_6QJ2kq0Zf3Wb8nXc1YtLr4"},
    # Customers
    "CustomerRequest": {
        "kind": "company",
        "name": "Zephyr Widgets GmbH",
        "company": "Zephyr Widgets GmbH",
        "email": "office@zephyr-widgets.example",
        "billing_email": "billing@zephyr-widgets.example",
        "phone": "+49 30 901820",
        "tax_id": "DE811907980",
        "currency": "EUR",
        "address_line1": "Friedrichstraße 68",
        "city": "Berlin",
        "postal_code": "10117",
        "country": "DE",
    },
    "ContactRequest": {
        "name": "Lukas Weber",
        "email": "lukas.weber@zephyr-widgets.example",
        "phone": "+49 30 901821",
        "role": "billing",
    },
    # Billing
    "InvoiceCreateRequest": {
        "customer": CUSTOMER,
        "currency": "EUR",
        "due_date": "2025-04-14",
        "notes": "Thank you for your business.",
        "lines": [
            {
                "description": "CloudPod S (1 vCPU, 256 MB), March 2025",
                "quantity": "1",
                "unit_price": "19.99",
                "tax_rate": "19",
                "period_start": "2025-03-01",
                "period_end": "2025-03-31",
            },
            {"description": "Setup fee", "quantity": "1", "unit_price": "9.00", "tax_rate": "19"},
        ],
    },
    "PatchedInvoiceUpdateRequest": {"due_date": "2025-04-30", "notes": "Payable within 30 days."},
    "PayRequest": {"amount": "32.50", "method": "bank_transfer", "reference": "SEPA 2025-03-18 ZEPHYR"},
    "RefundRequest": {"amount": "10.00", "reason": "Setup fee waived"},
    "CreditNoteCreateRequest": {
        "lines": [{"invoice_line": INVOICE_LINE, "amount": "9.00"}],
        "reason": "Setup fee waived",
    },
    "SubscriptionCreateRequest": {
        "customer": CUSTOMER,
        "product": PRODUCT,
        "cycle": "monthly",
        "currency": "EUR",
        "quantity": 1,
    },
    "SubscriptionUpdateRequest": {"product": PRODUCT_2, "quantity": 2},
    "CancelRequest": {"at_period_end": True},
    "UsageRequest": {"quantity": "12.5", "idempotency_key": "bw-2025-03-18T10", "occurred_at": "2025-03-18T10:00:00Z"},
    "GenericEventRequest": {
        "id": "evt_20250318_0042",
        "type": "payment.succeeded",
        "data": {"invoice_id": ID, "amount": "32.50", "currency": "EUR", "reference": "psp-7781234"},
    },
    # Catalog and orders
    "ProductRequest": {
        "name": "CloudPod S",
        "slug": "cloudpod-s",
        "description": "1 vCPU, 256 MB memory, 2 GB disk.",
        "type": "cloudpod_plan",
        "tax_class": "standard",
        "visibility": "public",
        "config": {"plan": "pod-s"},
        "prices": [
            {"currency": "EUR", "cycle": "monthly", "amount": "19.99", "setup_fee": "9.00"},
            {"currency": "EUR", "cycle": "annual", "amount": "199.00"},
        ],
    },
    "TaxRateRequest": {"country": "DE", "tax_class": "standard", "rate": "19", "name": "USt 19 %"},
    "OrderCreateRequest": {
        "customer": CUSTOMER,
        "currency": "EUR",
        "items": [{"product": PRODUCT, "cycle": "monthly", "quantity": 1}],
        "notes": "Ordered by phone",
    },
    # The customer portal (staff invite portal users; customers use the portal API)
    "PortalUserInviteRequest": {"email": "jana.novak@zephyr-widgets.example", "role": "billing", "name": "Jana Novak"},
    "PatchedPortalUserUpdateRequest": {"role": "technical"},
    "PortalLoginRequest": {
        "tenant": "acme-hosting",
        "email": "jana.novak@zephyr-widgets.example",
        "password": "correct-horse-battery-staple",
    },
    "PortalOrderCreateRequest": {
        "items": [{"product": PRODUCT, "cycle": "monthly", "config": {"domain": "zephyr.example"}}]
    },
    "PortalCancelRequest": {"at_period_end": False, "credit_unused": True, "preview": True},
    "PortalPlanChangeRequest": {"product": PRODUCT, "quantity": 1, "preview": True},
    "PortalContactRequest": {"name": "Ana Kovač", "email": "ana@zephyr-widgets.example", "role": "billing"},
    "PatchedPortalContactRequest": {"phone": "+386 1 234 5678"},
    "PortalMailboxPasswordRequest": {"password": "a-long-new-mailbox-passphrase"},
    "PortalAutoRenewRequest": {"auto_renew": False},
    "PortalCardSetupRequest": {
        "success_url": "https://shop.zephyr.example/account/cards?saved=1",
        "cancel_url": "https://shop.zephyr.example/account/cards",
    },
    # CloudPods and nodes
    "CloudPodCreateRequest": {"name": "zephyr-web", "plan": "pod-s", "image": "busybox"},
    "CloudPodUpdateRequest": {"name": "zephyr-shop"},
    "ResizeRequest": {"plan": "pod-m"},
    "NodeRequest": {
        "hostname": "pod-node-1.example.net",
        "address": "https://pod-node-1.example.net:8443",
        "transport": "agent",
        "roles": ["pods", "web"],
        "capacity": {"vcpu": "8", "memory_mb": 16384, "disk_gb": 200, "max_pods": 50},
        "tls_fingerprint": "sha256:" + "3b5d" * 16,
    },
    "RotateSecretRequest": {"grace_seconds": 3600},
    # SSL certificates
    "CertificateIssueRequest": {"website": ID, "challenge": "http-01", "hsts": True},
    "CertificateUploadRequest": {
        "certificate": "-----BEGIN CERTIFICATE-----\nMIIB…\n-----END CERTIFICATE-----\n",
        "chain": "-----BEGIN CERTIFICATE-----\nMIIB…\n-----END CERTIFICATE-----\n",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIGH…\n-----END PRIVATE KEY-----\n",
        "website": ID,
        "hsts": False,
    },
    "CertificateUpdateRequest": {"hsts": True},
    "CertificateMailRequest": {"node": ID},
    "CertificateReauthRequest": {"password": "correct-horse-battery-staple"},
    "RotateCertificateRequest": {"tls_fingerprint": "sha256:" + "9f2c" * 16},
    # Websites and files
    "WebsiteCreateRequest": {
        "primary_domain": "zephyr-widgets.example",
        "aliases": ["www.zephyr-widgets.example"],
        "customer": CUSTOMER,
        "php_version": "8.3",
        "https": True,
        "redirect_https": True,
        "www_redirect": "non-www",
        "redirects": [{"source": "/shop", "target": "https://shop.zephyr-widgets.example/", "code": 301}],
    },
    "HostingAccountLimitsRequest": {"limit_overrides": {"websites": 10, "disk_quota_mb": 20480}},
    "TodoCloseRequest": {"resolution": "Site moved from the old host and checked."},
    "WebsiteUpdateRequest": {"php_version": "8.4", "aliases": ["www.zephyr-widgets.example", "zephyr.example"]},
    "RequiredPathRequest": {"path": "public_html/old-index.html"},
    "WriteRequest": {"path": "public_html/index.html", "content": "<!doctype html><title>Zephyr Widgets</title>"},
    "MoveRequest": {"source": "public_html/old-index.html", "target": "public_html/archive/index.html"},
    "ChmodRequest": {"path": "public_html/uploads", "mode": "755"},
    "CompressRequest": {"paths": ["public_html"], "target": "backups/site-2025-03-18.zip", "format": "zip"},
    "ExtractRequest": {"archive": "backups/site-2025-03-18.zip", "target": "restore"},
    # DNS, domains, names
    "ZoneCreateRequest": {
        "name": "zephyr-widgets.example",
        "default_ttl": 3600,
        "template": "website",
        "template_vars": {"ipv4": "192.0.2.10"},
    },
    "ZoneUpdateRequest": {"default_ttl": 1800, "soa_refresh": 7200},
    "RecordRequest": {"name": "www", "type": "A", "ttl": 3600, "content": "192.0.2.10"},
    "ImportRequest": {
        "zone_file": "$ORIGIN zephyr-widgets.example.\n@ 3600 IN A 192.0.2.10\nwww 3600 IN CNAME @\n",
        "replace": False,
    },
    "DomainCreateRequest": {
        "name": "zephyr-widgets.example",
        "customer": CUSTOMER,
        "registrar": "manual",
        "auto_renew": True,
        "nameservers": ["ns1.example.net", "ns2.example.net"],
        "renewal_price": "14.90",
        "years": 1,
    },
    "DomainUpdateRequest": {"auto_renew": False, "nameservers": ["ns1.example.net", "ns2.example.net"]},
    "RenewRequest": {"years": 2},
    "NameDelegationRequest": {"name": "shop.zephyr-widgets.example", "grantee": TENANT},
    # Email
    "MailDomainRequest": {"name": "zephyr-widgets.example", "customer": CUSTOMER, "catch_all": ""},
    "MailDomainUpdateRequest": {"catch_all": "info@zephyr-widgets.example"},
    "MailboxRequest": {
        "local_part": "jana.novak",
        "password": "plum-orbit-lantern-42",
        "quota_mb": 2048,
        "enabled": True,
    },
    "MailboxUpdateRequest": {"quota_mb": 5120},
    "AliasRequest": {"local_part": "sales", "destinations": ["jana.novak@zephyr-widgets.example"]},
    "AliasUpdateRequest": {"destinations": ["jana.novak@zephyr-widgets.example", "lukas.weber@zephyr-widgets.example"]},
    "AutoresponderRequest": {
        "mailbox": MAILBOX,
        "enabled": True,
        "subject": "Out of office until 24 March",
        "body": "Thank you for your message. I am back on 24 March; for urgent matters write to sales@.",
        "start_date": "2025-03-17",
        "end_date": "2025-03-24",
        "interval_days": 3,
    },
    "AutoresponderUpdateRequest": {"enabled": False},
    # Databases
    "DatabaseServerRequest": {
        "node": NODE,
        "engine": "postgresql",
        "host": "127.0.0.1",
        "port": 5432,
        "admin_user": "mpanel_admin",
        "admin_password": "s3rver-admin-pass-2025",
    },
    "DatabaseServerUpdateRequest": {"port": 5433},
    "DatabaseRequest": {"server": SERVER, "name": "shop"},
    "DatabaseUserRequest": {"server": SERVER, "name": "shop_app"},
    "DatabaseGrantRequest": {"user": DB_USER},
    # Backups
    "BackupRepositoryRequest": {"name": "Nightly", "node": NODE},
    "PatchedRepositoryUpdateRequest": {
        "s3_access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "s3_secret_key": "wJalrXUtnFEMI-K7MDENG",
    },
    "RepositoryDeleteRequest": {"confirm": "Nightly"},
    "RepositoryExportRequest": {"code": "492817"},
    "BackupPolicyRequest": {
        "name": "Shop every night",
        "repository": ID,
        "resources": [f"website:{SERVER}", f"database:{DB_USER}"],
        "schedule": "0 3 * * *",
        "keep_last": 7,
        "keep_weekly": 4,
        "drill_interval_days": 7,
    },
    "PatchedBackupPolicyUpdateRequest": {"keep_last": 14},
    "BackupNowRequest": {"repository": ID, "resource_kind": "website", "resource_id": SERVER},
    "RestoreInputRequest": {"target": None},
    "DrillStartRequest": {"policy": ID},
    # Security
    "ApiTokenCreateRequest": {
        "name": "Deploy pipeline",
        "role": "ADMIN",
        "expires_at": "2025-12-31T23:59:59Z",
        "allowed_ips": ["203.0.113.0/24"],
    },
    "SslSettingsInputRequest": {"revoke_on_delete": True},
    "DomainSettingsInputRequest": {
        "nameservers": ["ns1.host.example", "ns2.host.example"],
        "registrar": "manual",
        "on_failed_registration": "refund",
        "epp_host": "epp.registry.example",
        "epp_port": 700,
        "epp_client_id": "client1",
        "epp_password": "registry-password",
    },
    "BillingSettingsInputRequest": {
        "invoice_number_format": "INV-{year}-{seq:06}",
        "credit_note_number_format": "CN-{year}-{seq:06}",
        "payment_terms_days": 14,
        "lead_days": 7,
        "reminder_days_before": [3],
        "reminder_days_after": [1, 7],
        "suspend_after_days": 14,
        "terminate_after_days": 45,
        "currencies": ["EUR", "USD"],
        "payment_methods": ["bank_transfer", "stripe"],
        "prices_include_tax": False,
    },
    "StripeConnectRequest": {"account_type": "express", "email": "billing@zephyr-widgets.example", "country": "DE"},
    "WebhookSecretRotateRequest": {"grace_hours": 24},
    "SecurityPolicyRequest": {
        "require_2fa": True,
        "min_password_length": 12,
        "session_idle_timeout_minutes": 60,
        "session_max_lifetime_hours": 168,
        "token_max_lifetime_days": 365,
        "ip_allowlist": [],
        "event_retention_days": 365,
    },
    "ShieldPolicyRequest": {
        "site": "zephyr-widgets.example",
        "enabled": True,
        "rate_limit_per_second": 20,
        "rate_limit_burst": 40,
        "block_cidrs": ["198.51.100.0/24"],
        "blocked_user_agents": ["sqlmap"],
        "blocked_paths": ["/wp-login.php"],
        "max_body_size_kb": 10240,
        "maintenance_mode": False,
    },
    "ShieldIngestRequest": {
        "events": [
            {
                "occurred_at": "2025-03-18T10:04:11Z",
                "ip": "198.51.100.77",
                "rule": "rate_limit",
                "site": "zephyr-widgets.example",
                "method": "POST",
                "path": "/wp-login.php",
                "user_agent": "python-requests/2.32",
            }
        ]
    },
    # White-label
    "BrandInputRequest": {
        "display_name": "Zephyr Hosting",
        "primary_color": "#0b3d91",
        "accent_color": "#ffd166",
        "support_email": "help@zephyr-hosting.example",
        "support_url": "https://help.zephyr-hosting.example",
        "support_phone": "+49 30 901820",
        "legal_name": "Zephyr Hosting GmbH",
        "address_line1": "Friedrichstraße 68",
        "postal_code": "10117",
        "city": "Berlin",
        "country": "DE",
        "vat_id": "DE811907980",
        "registration_number": "HRB 123456 B",
        "invoice_footer": "Bank transfer to DE89 3704 0044 0532 0130 00 (COBADEFFXXX).",
        "terms_url": "https://zephyr-hosting.example/terms",
    },
    "CustomDomainCreateRequest": {"hostname": "my.zephyr-hosting.example"},
}
# A PATCH sends only what changes: these request components are answered by a few of their fields.
PATCH_FIELDS: dict[str, tuple[str, ...]] = {
    "CustomerRequest": ("billing_email", "phone"),
    "ContactRequest": ("phone",),
    "ProductRequest": ("description",),
    "TaxRateRequest": ("rate",),
    "TenantRequest": ("name",),
    "NodeRequest": ("status",),
    "BrandInputRequest": ("support_phone", "invoice_footer"),
    "RecordRequest": ("ttl", "content"),
    "ShieldPolicyRequest": ("maintenance_mode",),
}
PATCH_VALUES: dict[str, dict[str, Any]] = {"NodeRequest": {"status": "maintenance"}}

# Values of answered fields by name, where the request's own example does not give them.
FIELD_VALUES: dict[str, Any] = {
    "id": ID,
    "tenant": TENANT,
    "customer": CUSTOMER,
    "product": PRODUCT,
    "node": NODE,
    "server": SERVER,
    "user": USER,
    "mailbox": MAILBOX,
    "invoice": ID,
    "subscription": ID,
    "email": "jana.novak@zephyr-widgets.example",
    "full_name": "Jana Novak",
    "name": "Zephyr Widgets GmbH",
    "customer_name": "Zephyr Widgets GmbH",
    "company": "Zephyr Widgets GmbH",
    "number": "INV-2025-0042",
    "currency": "EUR",
    "country": "DE",
    "city": "Berlin",
    "description": "CloudPod S (1 vCPU, 256 MB), March 2025",
    "hostname": "pod-node-1.example.net",
    "primary_domain": "zephyr-widgets.example",
    "domain": "zephyr-widgets.example",
    "plan": "pod-s",
    "image": "busybox",
    "amount": "32.50",
    "amount_due": "32.50",
    "amount_paid": "0.00",
    "subtotal": "28.99",
    "tax": "5.51",
    "tax_total": "5.51",
    "total": "34.50",
    "unit_price": "19.99",
    "quantity": "1",
    "tax_rate": "19.00",
    "discount": "0.00",
    "ttl": 3600,
    "ip": "198.51.100.77",
    "address": "https://pod-node-1.example.net:8443",
    "container_id": "mp-0e8d4c2a7f1b",
    "local_part": "jana.novak",
    "php_version": "8.3",
    "document_root": "public_html",
    "system_user": "zephyrweb",
    "reason": "Setup fee waived",
    "reference": "SEPA 2025-03-18 ZEPHYR",
    "notes": "",
    "last_error": "",
    "path": "public_html/index.html",
    "slug": "cloudpod-s",
    "memory_mb": 256,
    "disk_gb": 2,
    "pids": 128,
    "port": 5432,
    "quota_mb": 2048,
    "detail": "Done.",
    "key": "pZ4c1mW8qN2vR6tY0sK3hJ7uB9eD5fG1",
    "secret": "JBSWY3DPEHPK3PXP",
    "token": "mp_8Kq2Zf3Wb8nXc1YtLr4Vd7Hs0Jp5Ue6A",
    "node_hostname": "pod-node-1.example.net",
    "billing_details": "Zephyr Widgets GmbH\nFriedrichstraße 68\n10117 Berlin\nGermany\nVAT DE811907980",
    "unicode_name": "zephyr-widgets.example",
    "nameservers": "ns1.example.net",
    "pending_nameservers": "ns1.example.net",
    "registrar": "manual",
    "external_ref": "",
    "soa_mname": "ns1.example.net.",
    "soa_rname": "hostmaster.example.net.",
    "source": "/shop",
    "target": "https://shop.zephyr-widgets.example/",
    "address_line1": "Friedrichstraße 68",
    "address_line2": "",
    "postal_code": "10117",
    "state": "",
    "tax_id": "DE811907980",
    "tenant_name": "Zephyr Hosting",
    "version": "16.4",
    "host": "127.0.0.1",
    "admin_user": "mpanel_admin",
    "subject": "Out of office until 24 March",
    "body": "Thank you for your message. I am back on 24 March.",
    "object_type": "billing.invoice",
    "object_id": ID,
    "resource_type": "website",
    "resource_id": ID,
    "resource_repr": "zephyr-widgets.example",
    "title": "PHP 8.1 no longer receives security fixes",
    "check": "php_version_supported",
    "evidence": "php_version=8.1",
    "remediation": "Switch the website to PHP 8.3 or later.",
    "provider": "manual",
    "site": "zephyr-widgets.example",
    "prefix": "mp_8Kq2",
    "ip_allowlist": "203.0.113.0/24",
    "allowed_ips": "203.0.113.0/24",
    "last_used_ip": "203.0.113.24",
    "otpauth_uri": "otpauth://totp/mPanel:jana.novak%40zephyr-widgets.example?secret=JBSWY3DPEHPK3PXP&issuer=mPanel",
    "qr_svg": '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 29 29"><path d="M0 0h7v7H0z"/></svg>',
    "result": "ok",
    "reported": "2025-03-18T10:04:11Z",
    "tls_fingerprint": "sha256:" + "3b5d" * 16,
    "tls_fingerprint_next": "sha256:" + "9f2c" * 16,
}
# Whole answers whose figures must agree with each other, by component.
COMPONENT_VALUES: dict[str, dict[str, Any]] = {
    "Invoice": {
        "subtotal": "28.99",
        "discount_total": "0.00",
        "tax_total": "5.51",
        "total": "34.50",
        "amount_paid": "0.00",
        "amount_credited": "0.00",
        "credit_applied": "0.00",
        "amount_due": "34.50",
    },
    "Mailbox": {"address": "jana.novak@zephyr-widgets.example"},
    "Alias": {"address": "sales@zephyr-widgets.example"},
    "Zone": {"soa_refresh": 10800, "soa_retry": 3600, "soa_expire": 604800, "soa_minimum": 3600, "serial": 2025031801},
}
DATE = "2025-03-18"
DATETIME = "2025-03-18T10:04:11Z"


def _resolve(schema: dict, components: dict) -> dict:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _resolve(schema["allOf"][0], components)
    return schema


def _value(name: str, schema: dict, components: dict, depth: int = 0) -> Any:
    ref = schema.get("$ref") or (schema.get("allOf") or [{}])[0].get("$ref") or ""
    component = ref.rsplit("/", 1)[-1]
    schema = _resolve(schema, components)
    if "oneOf" in schema:
        return _value(name, schema["oneOf"][0], components, depth)
    if "enum" in schema:
        choices = [c for c in schema["enum"] if c not in ("", None)]
        return choices[0] if choices else schema["enum"][0]
    kind, fmt = schema.get("type"), schema.get("format")
    known = FIELD_VALUES.get(name)
    if kind == "object" or "properties" in schema:
        if depth > 3 or "properties" not in schema:
            return {}
        example = _object(schema, components, depth + 1)
        return _merge(example, COMPONENT_VALUES.get(component, {}), schema, components)
    if kind == "array":
        return [_value(name.rstrip("s"), schema.get("items", {}), components, depth + 1)]
    if kind == "boolean":
        return name in {"enabled", "https", "auto_renew", "redirect_https", "is_active", "confirmed"}
    if kind == "integer":
        value = known if isinstance(known, int) else 1
        return max(schema.get("minimum", value), min(schema.get("maximum", value), value))
    if kind == "number":
        return float(known) if isinstance(known, int | float) else 1.0
    if fmt == "uuid":
        return known if isinstance(known, str) and len(known) == 36 else ID
    if fmt == "date-time":
        # What has not happened yet to a new object (paid, voided, deleted) is null.
        return None if schema.get("nullable") and name not in {"created_at", "updated_at"} else DATETIME
    if fmt == "date":
        return DATE
    if fmt == "email":
        return FIELD_VALUES["email"]
    if fmt == "uri":
        return f"https://panel.example.com{API}"
    if fmt == "decimal":
        return known if isinstance(known, str) and re.fullmatch(r"-?\d+(\.\d+)?", known) else "1.00"
    if isinstance(known, str):
        return known
    return name.replace("_", " ").capitalize() or "text"


def _object(schema: dict, components: dict, depth: int = 0) -> dict:
    return {
        name: _value(name, prop, components, depth)
        for name, prop in schema.get("properties", {}).items()
        if not _resolve(prop, components).get("writeOnly")
    }


def _fits(value: Any, schema: dict) -> bool:
    """Whether a request's scalar value can stand in the answer's field as it is."""
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema.get("type")
    if kind == "string":
        return isinstance(value, str)
    if kind in {"integer", "number"}:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return False


def _merge(example: Any, sent: Any, schema: dict, components: dict) -> Any:
    """``example`` with what the request ``sent`` where the answer repeats it (nested lines included)."""
    schema = _resolve(schema, components)
    if "oneOf" in schema:
        schema = _resolve(schema["oneOf"][0], components)
    if isinstance(example, dict) and isinstance(sent, dict):
        properties = schema.get("properties", {})
        for name, value in sent.items():
            if name in properties and name in example:
                example[name] = _merge(example[name], value, properties[name], components)
        return example
    if isinstance(example, list) and isinstance(sent, list) and sent and example:
        items = schema.get("items", {})
        merged = [_merge(copy.deepcopy(example[0]), value, items, components) for value in sent]
        return merged if all(item is not None for item in merged) else example
    if not isinstance(sent, dict | list) and _fits(sent, schema):
        return sent
    return example


def response_example(schema: dict, components: dict, request: dict | None) -> Any:
    """An answer built from the schema's field names, with what the request sent where it answers it."""
    resolved = _resolve(schema, components)
    if resolved.get("type") == "array":
        return [response_example(resolved.get("items", {}), components, request)]
    example = _value("", schema, components)
    return _merge(example, request, resolved, components) if request else example


# Bodies without a component of their own, by operation.
OPERATION_EXAMPLES: dict[str, Any] = {
    "POST /api/v1/hosting/server-metrics/ingest/": {
        "samples": [["cpu.percent", 1742292251, 12.5], ["memory.used_bytes", 1742292251, 734003200]],
        "services": {"nginx": {"state": "active"}, "pdns": {"state": "active"}},
    },
}


def _request_example(name: str) -> dict | None:
    if name in REQUEST_EXAMPLES:
        return REQUEST_EXAMPLES[name]
    if name.startswith("Patched"):
        full = name.removeprefix("Patched")
        base = REQUEST_EXAMPLES.get(full)
        if base is None:
            return None
        fields = PATCH_FIELDS.get(full)
        if not fields:
            return base
        return {
            key: PATCH_VALUES.get(full, {}).get(key, base.get(key))
            for key in fields
            if key in base or key in PATCH_VALUES.get(full, {})
        }
    return None


# --- errors ---------------------------------------------------------------------------------------

ERROR_EXAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "401": {
        "not_authenticated": {
            "summary": "No credentials",
            "value": {"detail": "Authentication credentials were not provided."},
        },
        "expired": {"summary": "Expired or revoked key", "value": {"detail": "Invalid or expired token."}},
    },
    "403": {
        "role": {
            "summary": "Role too low",
            "value": {"detail": "You do not have permission to perform this action."},
        },
    },
    "404": {"not_found": {"summary": "Not found (or another tenant's)", "value": {"detail": "Not found."}}},
    "409": {
        "state": {
            "summary": "The object's state forbids it",
            "value": {"detail": "A void invoice cannot be issued.", "code": "conflict"},
        },
        "idempotency": {
            "summary": "Same Idempotency-Key still running",
            "value": {
                "detail": "A request with this Idempotency-Key is still being processed.",
                "code": "idempotency_in_progress",
            },
        },
    },
    "413": {
        "too_large": {
            "summary": "Body too large",
            "value": {"detail": "The request body is larger than 2621440 bytes."},
        }
    },
    "429": {
        "throttled": {
            "summary": "Too many requests",
            "value": {"detail": "Request was throttled. Expected available in 42 seconds."},
        }
    },
    "503": {
        "unavailable": {
            "summary": "Database briefly unavailable",
            "value": {"detail": "The database is unavailable, retry shortly.", "code": "unavailable"},
        }
    },
}
TENANT_HEADER_ERROR = {
    "summary": "Which tenant?",
    "value": {"X-Tenant-ID": ["Required: you belong to more than one tenant."]},
}


def _bad_request_examples(operation: dict, components: dict) -> dict:
    examples: dict[str, dict[str, Any]] = {}
    body = operation.get("requestBody", {}).get("content", {})
    schema = next(iter(body.values()), {}).get("schema") if body else None
    if schema is not None:
        resolved = _resolve(schema, components)
        required = resolved.get("required") or list(resolved.get("properties", {}))[:1]
        if required:
            examples["field"] = {
                "summary": "Invalid field",
                "value": {required[0]: ["This field is required."]},
            }
    examples["invalid"] = {
        "summary": "Invalid input",
        "value": {"detail": "A value is out of the range the database accepts.", "code": "invalid"},
    }
    if any(p.get("name") == "X-Tenant-ID" for p in operation.get("parameters", [])):
        examples["tenant"] = TENANT_HEADER_ERROR
    return examples


def is_error_format(schema: dict) -> bool:
    """Whether an answer is in the error format of apps.common.exceptions (``{detail, code}`` or field errors)."""
    ref = schema.get("$ref", "")
    if ref:
        return ref.rsplit("/", 1)[1] in {"Error", "ValidationError"}
    return "detail" in schema.get("properties", {})


# --- the hook -------------------------------------------------------------------------------------

METHODS = ("get", "post", "put", "patch", "delete")
WRITES = ("post", "put", "patch")


def postprocess(result: dict, generator: Any, request: Any, public: bool) -> dict:
    components = result.get("components", {}).get("schemas", {})
    used: set[str] = set()
    for path, item in result.get("paths", {}).items():
        module = module_of(path)
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            if module is not None:
                operation["tags"] = [module.name]
                used.add(module.name)
            request_example = _add_request_example(operation, f"{method.upper()} {path}")
            if method in WRITES:
                _add_response_examples(operation, components, request_example)
            _add_error_examples(operation, components)
    result.setdefault("info", {})["description"] = DESCRIPTION
    result["tags"] = [{"name": m.name, "description": m.description} for m in MODULES if m.name in used]
    schemes = result.get("components", {}).get("securitySchemes", {})
    if "bearerAuth" in schemes:
        schemes["bearerAuth"]["description"] = (
            "The key answered by POST /api/v1/auth/login/ (after its two-factor step), or a personal API "
            "token (mp_…). Paste it without the word Bearer."
        )
    return result


def _example(value: Any) -> dict:
    """An OpenAPI ``examples`` map of one example (what Swagger shows first, and fills "Try it out" with)."""
    return {"example": {"summary": "Example", "value": value}}


def _add_request_example(operation: dict, key: str) -> dict | None:
    found = None
    for content in operation.get("requestBody", {}).get("content", {}).values():
        ref = content.get("schema", {}).get("$ref", "")
        example = _request_example(ref.rsplit("/", 1)[-1]) if ref else OPERATION_EXAMPLES.get(key)
        if example is not None:
            content["examples"] = _example(copy.deepcopy(example))
            found = example
    return found


def _add_response_examples(operation: dict, components: dict, request: dict | None) -> None:
    for code, response in operation.get("responses", {}).items():
        if not code.startswith("2"):
            continue
        content = response.get("content", {}).get("application/json")
        if content and "schema" in content and "examples" not in content:
            value = response_example(content["schema"], components, request)
            content["examples"] = _example(value)


def _add_error_examples(operation: dict, components: dict) -> None:
    for code, response in operation.get("responses", {}).items():
        content = response.get("content", {}).get("application/json")
        if not code.startswith(("4", "5")) or not content or "examples" in content:
            continue
        if not is_error_format(content.get("schema", {})):
            continue  # an answer of its own (a health check's 503 lists its checks)
        examples = _bad_request_examples(operation, components) if code == "400" else ERROR_EXAMPLES.get(code)
        if examples:
            content["examples"] = copy.deepcopy(examples)
