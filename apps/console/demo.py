"""The demo business behind `make run`: enough data that every screen of the console has something.

Every row is made through the owning app's services (never a raw model save), so the demo has the
audit trail, jobs and side effects a real business would. Each step finds its own rows first by a
natural key (a product's slug, a customer's e-mail, an invoice's note…) and makes only what is
missing: running it again changes nothing, resets no password and ends no session.

Each step commits on its own, so the jobs it enqueues run (in-process in the embedded default)
before the next step, as they would in a business day: the CloudPod is really running at the end.
"""

from __future__ import annotations

import base64
import os
from binascii import unhexlify
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.audit import services as audit
from apps.billing.locks import lock_subscriptions
from apps.billing.models import Invoice, InvoiceStatus, Subscription
from apps.billing.services import charges, credit_notes, dunning, invoices, payments, subscriptions
from apps.catalog import services as catalog
from apps.catalog.models import Product, TaxRate
from apps.cloudpods.models import CloudPod
from apps.customers import services as customer_services
from apps.customers.models import Customer
from apps.databases import services as database_services
from apps.databases.models import Database, DatabaseServer
from apps.dns import services as dns_services
from apps.dns.models import Zone
from apps.domains import services as domain_services
from apps.domains.models import Domain
from apps.mail import services as mail_services
from apps.mail.models import Mailbox, MailDomain
from apps.nodes.models import Node
from apps.nodes.services import node_create
from apps.security.events import record_event
from apps.security.models import EventType, SecurityEvent
from apps.tenancy import services as tenancy
from apps.tenancy.models import Membership, Tenant
from apps.tenancy.roles import ORDERED
from apps.tenancy.scoping import tenant_scope
from apps.websites import services as website_services
from apps.websites.models import Website

DEFAULT_PASSWORD = "mpanel-demo-2026"
OPERATOR_EMAIL = "operator@mpanel.local"
TENANT_SLUG = "demo"
DOMAIN = "demo-hosting.net"
ZONE_FILE = """$TTL 3600
@     IN NS    ns1.demo-hosting.net.
@     IN NS    ns2.demo-hosting.net.
@     IN A     192.0.2.10
www   IN CNAME demo-hosting.net.
@     IN MX    10 mail.demo-hosting.net.
mail  IN A     192.0.2.25
ns1   IN A     192.0.2.53
ns2   IN A     198.51.100.53
"""

CUSTOMERS = [
    {"name": "Ada Lovelace", "email": "ada@example.com", "kind": "person", "country": "GB", "currency": "GBP",
     "city": "London"},
    {"name": "Grace Hopper", "email": "grace@example.com", "kind": "person", "country": "US", "city": "Arlington"},
    {"name": "Acme Hosting Ltd", "company": "Acme Hosting Ltd", "email": "billing@acme.example", "kind": "company",
     "country": "DE", "currency": "EUR", "tax_id": "DE123456789", "city": "Berlin"},
    {"name": "Jean Dupont", "email": "jean@dupont.example", "kind": "person", "country": "FR", "currency": "EUR",
     "city": "Lyon"},
    {"name": "Oranje Webwinkel BV", "company": "Oranje Webwinkel BV", "email": "admin@oranje.example",
     "kind": "company", "country": "NL", "currency": "EUR", "city": "Utrecht"},
]  # fmt: skip

TAX_RATES = [
    {"country": "DE", "tax_class": "standard", "rate": Decimal("19"), "name": "VAT DE 19%"},
    {"country": "FR", "tax_class": "standard", "rate": Decimal("20"), "name": "TVA FR 20%"},
    {"country": "GB", "tax_class": "standard", "rate": Decimal("20"), "name": "VAT GB 20%"},
    {"country": "NL", "tax_class": "standard", "rate": Decimal("21"), "name": "BTW NL 21%"},
]


def _prices(monthly: dict[str, str], annual_factor: int = 10, setup: dict[str, str] | None = None) -> list[dict]:
    """Monthly and annual prices (two months free a year) in each currency given."""
    out = []
    for currency, amount in monthly.items():
        fee = Decimal((setup or {}).get(currency, "0"))
        out.append({"currency": currency, "cycle": "monthly", "amount": Decimal(amount), "setup_fee": fee})
        out.append({"currency": currency, "cycle": "annual", "amount": Decimal(amount) * annual_factor})
    return out


PRODUCTS = [
    {"slug": "cloudpod-s", "name": "CloudPod S", "type": "cloudpod_plan", "visibility": "public",
     "description": "1 vCPU, 256 MB memory, 2 GB disk.", "config": {"plan": "pod-s"},
     "prices": _prices({"USD": "9.99", "EUR": "8.99", "GBP": "7.99"})},
    {"slug": "cloudpod-m", "name": "CloudPod M", "type": "cloudpod_plan", "visibility": "public",
     "description": "2 vCPU, 512 MB memory, 5 GB disk.", "config": {"plan": "pod-m"},
     "prices": _prices({"USD": "19.99", "EUR": "17.99", "GBP": "15.99"})},
    {"slug": "web-starter", "name": "Web Hosting Starter", "type": "hosting_plan", "visibility": "public",
     "description": "One website, 10 GB, free TLS.",
     "prices": _prices({"USD": "4.99", "EUR": "4.49", "GBP": "3.99"}, setup={"USD": "10.00", "EUR": "9.00"})},
    {"slug": "web-business", "name": "Web Hosting Business", "type": "hosting_plan", "visibility": "public",
     "description": "Ten websites, 50 GB, daily backups.",
     "prices": _prices({"USD": "14.99", "EUR": "13.49", "GBP": "11.99"})},
    {"slug": "daily-backups", "name": "Daily backups", "type": "addon", "visibility": "public",
     "description": "Thirty days of daily snapshots.",
     "prices": _prices({"USD": "2.00", "EUR": "1.80", "GBP": "1.60"})},
    {"slug": "domain-com", "name": ".com registration", "type": "domain", "visibility": "public",
     "prices": [{"currency": c, "cycle": "annual", "amount": Decimal(a)}
                for c, a in (("USD", "12.99"), ("EUR", "11.99"), ("GBP", "10.49"))]},
    {"slug": "site-migration", "name": "Website migration", "type": "service", "visibility": "public",
     "description": "We move your site from your old host.",
     "prices": [{"currency": c, "cycle": "onetime", "amount": Decimal(a)}
                for c, a in (("USD", "49.00"), ("EUR", "45.00"), ("GBP", "39.00"))]},
    # Hidden and, on purpose, without a plan: its subscription's activation is the demo's failed job.
    {"slug": "cloudpod-custom", "name": "CloudPod custom (plan to be set)", "type": "cloudpod_plan",
     "visibility": "hidden", "description": "A custom deal whose plan the sales team has not picked yet.",
     "prices": _prices({"USD": "39.00", "EUR": "35.00", "GBP": "31.00"})},
]  # fmt: skip
BUNDLE = {"slug": "starter-bundle", "name": "Starter bundle", "type": "hosting_plan", "visibility": "public",
          "description": "Web Hosting Starter with daily backups, 15% off.", "bundle_discount_percent": Decimal("15"),
          "components": ["web-starter", "daily-backups"]}  # fmt: skip


@dataclass
class Demo:
    """What the seed made or found, and the log-in details it prints."""

    password: str
    tenant: Tenant | None = None
    operator: object | None = None
    logins: list[tuple[str, str]] = field(default_factory=list)
    node: Node | None = None
    customers: dict[str, Customer] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    new_users: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the seed left out, and why (printed)


def steps(demo: Demo) -> list[tuple[str, Callable[[], None]]]:
    """The seed's steps in order, each a (label shown in the progress bar, callable)."""
    return [
        ("Tenant, members and the operator", lambda: people(demo)),
        ("Operator's authenticator (TOTP)", lambda: operator_totp(demo)),
        ("The local node", lambda: local_node(demo)),
        ("Customers", lambda: customers(demo)),
        ("Tax rates and products", lambda: products(demo)),
        ("Invoices in every state", lambda: invoice_states(demo)),
        ("Subscriptions and the running CloudPod", lambda: subscription_states(demo)),
        ("Dunning of what is overdue", lambda: dunning.dunning_run()),
        ("Domain and DNS zone", lambda: domain_and_zone(demo)),
        ("Website", lambda: website(demo)),
        ("Mail domain and mailbox", lambda: mail(demo)),
        ("Database", lambda: database(demo)),
        ("Security events", lambda: security_events(demo)),
    ]


def _in_tenant(demo: Demo, fn: Callable[[], None]) -> None:
    with tenant_scope(demo.tenant), transaction.atomic():
        fn()


# --- people ----------------------------------------------------------------------------------------


def _user(email: str, password: str, demo: Demo, **extra):
    """The user of this e-mail; made (with the demo password) only when missing, never reset."""
    User = get_user_model()
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        if extra.pop("superuser", False):
            user = User.objects.create_superuser(email, password, **extra)
        else:
            user = User.objects.create_user(email, password, **extra)
        demo.new_users.append(email)
    return user


@transaction.atomic
def people(demo: Demo) -> None:
    """The demo tenant (slug ``demo``) with one member per role, each joined by an accepted invitation."""
    owner = _user("owner@demo.mpanel.local", demo.password, demo, full_name="Demo Owner")
    tenant = Tenant.objects.filter(slug=TENANT_SLUG).first()
    if tenant is None:
        tenant = tenancy.tenant_create(actor=owner, name="Demo Hosting")
        tenant = tenancy.tenant_update(tenant=tenant, data={"slug": TENANT_SLUG})
    demo.tenant = tenant
    for role in reversed(ORDERED):
        email = f"{role.value.lower()}@demo.mpanel.local"
        user = _user(email, demo.password, demo, full_name=f"Demo {role.label}")
        if not Membership.objects.filter(tenant=tenant, user=user).exists():
            invitation = tenancy.invitation_create(tenant=tenant, actor=owner, email=email, role=role)
            tenancy.invitation_accept(user=user, invitation_id=invitation.pk)
        demo.logins.append((role.value, email))
    demo.operator = _user(OPERATOR_EMAIL, demo.password, demo, superuser=True, full_name="Demo Operator")


@transaction.atomic
def operator_totp(demo: Demo) -> None:
    """The demo operator's authenticator: made once; its secret is printed by every run."""
    if TOTPDevice.objects.filter(user=demo.operator, confirmed=True).exists():
        return
    device = TOTPDevice.objects.create(user=demo.operator, name="Demo authenticator", confirmed=True)
    audit.record(action="security.mfa_enable", obj=device, tenant=None, actor=None)
    record_event(EventType.MFA_ENABLED, user=demo.operator, actor=None, reason="seed_demo")


def operator_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def totp_secret(device: TOTPDevice) -> str:
    return base64.b32encode(unhexlify(device.key)).decode()


# --- infrastructure --------------------------------------------------------------------------------


def local_node(demo: Demo) -> None:
    def make() -> None:
        demo.node = Node.objects.filter(hostname="local").first()
        if demo.node is None:
            # The embedded default's own machine, as a node rooted under ./var/node.
            demo.node, _secret = node_create(tenant=demo.tenant, data={
                "hostname": "local", "transport": "local", "roles": ["pods", "web", "dns", "mail", "db"],
                "capacity": {"vcpu": 2, "memory_mb": 2048, "disk_gb": 20, "max_pods": 10},
            })  # fmt: skip

    _in_tenant(demo, make)


# --- customers and catalog -------------------------------------------------------------------------


def customers(demo: Demo) -> None:
    def make() -> None:
        for data in CUSTOMERS:
            customer = Customer.objects.filter(email=data["email"]).first()
            demo.customers[data["email"]] = customer or customer_services.customer_create(
                tenant=demo.tenant, data=dict(data)
            )

    _in_tenant(demo, make)


def products(demo: Demo) -> None:
    def make() -> None:
        for data in TAX_RATES:
            if not TaxRate.objects.filter(country=data["country"], tax_class=data["tax_class"]).exists():
                catalog.tax_rate_create(tenant=demo.tenant, data=dict(data))
        for data in PRODUCTS:
            product = Product.objects.filter(slug=data["slug"]).first()
            demo.products[data["slug"]] = product or catalog.product_create(tenant=demo.tenant, data=dict(data))
        bundle = Product.objects.filter(slug=BUNDLE["slug"]).first()
        if bundle is None:
            data = {k: v for k, v in BUNDLE.items() if k != "components"}
            data["bundle_items"] = [{"product": demo.products[s].pk, "quantity": 1} for s in BUNDLE["components"]]
            bundle = catalog.product_create(tenant=demo.tenant, data=data)
        demo.products[BUNDLE["slug"]] = bundle

    _in_tenant(demo, make)


# --- invoices --------------------------------------------------------------------------------------

# (customer, note that finds it again, lines, what happens to it). The notes read as an operator's.
INVOICES = [
    ("grace@example.com", "Quote for the spring redesign: to be confirmed with Grace.", "draft",
     [("Design workshop (half day)", "1", "350.00"), ("Landing page build", "1", "600.00")]),
    ("billing@acme.example", "Extra storage for the spring sale.", "open",
     [("Extra storage 100 GB (May)", "1", "20.00"), ("Priority support (May)", "1", "49.00")]),
    ("ada@example.com", "Reminder sent: payment was due two weeks ago.", "overdue",
     [("Website migration", "1", "39.00"), ("SSL certificate installation", "1", "15.00")]),
    ("grace@example.com", "Paid by bank transfer, thank you.", "paid",
     [("Consulting (hours)", "3", "80.00")]),
    ("billing@acme.example", "Issued twice by mistake; see the replacement.", "void",
     [("Extra storage 100 GB (April)", "1", "20.00")]),
    ("jean@dupont.example", "Two days of downtime credited (credit note).", "credited",
     [("Managed WordPress (annual)", "1", "240.00"), ("Premium theme licence", "1", "59.00")]),
]  # fmt: skip


def invoice_states(demo: Demo) -> None:
    """Before the subscriptions: Jean's credit note leaves a credit balance that pays his first
    subscription invoice in full at issue (so that subscription is active without a payment)."""
    for email, note, state, lines in INVOICES:
        _in_tenant(demo, lambda e=email, n=note, s=state, li=lines: _invoice(demo, e, n, s, li))


def _invoice(demo: Demo, email: str, note: str, state: str, lines: list[tuple[str, str, str]]) -> None:
    customer = demo.customers[email]
    if Invoice.objects.filter(customer=customer, notes=note).exists():
        return
    today = timezone.localdate()
    due = today - timedelta(days=14) if state == "overdue" else None
    invoice = invoices.invoice_create(
        tenant=demo.tenant, customer=customer, notes=note, due_date=due,
        lines=[{"description": d, "quantity": Decimal(q), "unit_price": Decimal(p)} for d, q, p in lines],
    )  # fmt: skip
    if state == "draft":
        return
    invoice = invoices.invoice_issue(invoice=invoice)
    if state == "paid":
        payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="bank_transfer",
                                reference="Bank transfer ref 2026-0412")  # fmt: skip
    elif state == "void":
        invoices.invoice_void(invoice=invoice)
    elif state == "credited":
        payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="cash")
        first = invoice.lines.order_by("position", "created_at").first()
        credit_notes.credit_note_create(
            invoice=invoice, reason="Two days of downtime in March.",
            lines=[{"invoice_line": first.pk, "amount": (first.amount / 10).quantize(Decimal("0.01"))}],
        )  # fmt: skip


# --- subscriptions ---------------------------------------------------------------------------------

# (customer, product, status wanted, config); the CloudPod S one is the running pod.
SUBSCRIPTIONS = [
    ("grace@example.com", "cloudpod-s", "active", {"name": "grace-app"}),
    ("jean@dupont.example", "web-starter", "active", {}),
    ("admin@oranje.example", "starter-bundle", "active", {}),
    ("billing@acme.example", "web-business", "past_due", {}),
    ("ada@example.com", "web-starter", "cancelled", {}),
    ("jean@dupont.example", "cloudpod-custom", "failed", {"name": "jean-custom"}),
]


def subscription_states(demo: Demo) -> None:
    for email, slug, wanted, config in SUBSCRIPTIONS:
        _in_tenant(demo, lambda e=email, s=slug, w=wanted, c=config: _subscription(demo, e, s, w, c))


def _pay(invoice: Invoice | None) -> None:
    if invoice is not None and invoice.status == InvoiceStatus.OPEN and invoice.amount_due > 0:
        payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="bank_transfer")


def _invoice_of(sub: Subscription) -> Invoice | None:
    return Invoice.objects.filter(lines__subscription_charge__subscription=sub).order_by("created_at").first()


def _subscription(demo: Demo, email: str, slug: str, wanted: str, config: dict) -> None:
    customer, product = demo.customers[email], demo.products[slug]
    if Subscription.objects.filter(customer=customer, product=product).exists():
        return
    # The past-due one started 40 days ago: its first month is paid, its renewal is not.
    start = timezone.localdate() - timedelta(days=40) if wanted == "past_due" else None
    sub = subscriptions.subscription_create(tenant=demo.tenant, customer=customer, product=product,
                                            cycle="monthly", config=config, start=start)  # fmt: skip
    _pay(_invoice_of(sub))
    if wanted == "cancelled":
        subscriptions.subscription_cancel(sub=Subscription.objects.get(pk=sub.pk))
    elif wanted == "past_due":
        # Its renewal, for the period that began ten days ago, is issued due three days ago (its
        # own due date, as any invoice may have): open and overdue, so the seed's dunning run
        # marks the subscription past due. Issued invoices are never changed afterwards.
        charges.bill_subscriptions(lock_subscriptions([sub.pk]), on=timezone.localdate(),
                                   due_date=timezone.localdate() - timedelta(days=3))  # fmt: skip


# --- hosting ---------------------------------------------------------------------------------------


def domain_and_zone(demo: Demo) -> None:
    def make() -> None:
        customer = demo.customers["billing@acme.example"]
        if not Domain.objects.filter(name=DOMAIN).exists():
            today = timezone.localdate()
            domain_services.domain_create(tenant=demo.tenant, name=DOMAIN, customer=customer,
                                          registered_at=today - timedelta(days=200),
                                          expires_at=today + timedelta(days=165),
                                          nameservers=["ns1.demo-hosting.net", "ns2.demo-hosting.net"],
                                          renewal_price=Decimal("12.99"))  # fmt: skip
        if not Zone.objects.filter(name=DOMAIN).exists():
            # One zone file, so the node gets one sync rather than one per record.
            dns_services.zone_create(tenant=demo.tenant, name=DOMAIN, node=demo.node,
                                     nameservers=["ns1.demo-hosting.net", "ns2.demo-hosting.net"],
                                     zone_file=ZONE_FILE)  # fmt: skip

    _in_tenant(demo, make)


def website(demo: Demo) -> None:
    def make() -> None:
        if not Website.objects.filter(primary_domain=f"www.{DOMAIN}").exists():
            website_services.website_create(tenant=demo.tenant, primary_domain=f"www.{DOMAIN}", aliases=[DOMAIN],
                                            node=demo.node)  # fmt: skip

    _in_tenant(demo, make)


def mail(demo: Demo) -> None:
    def make() -> None:
        mail_domain = MailDomain.objects.filter(name=DOMAIN).first() or mail_services.mail_domain_create(
            tenant=demo.tenant, name=DOMAIN, node=demo.node, customer=demo.customers["billing@acme.example"]
        )
        if not Mailbox.objects.filter(mail_domain=mail_domain, local_part="info").exists():
            mail_services.mailbox_create(mail_domain=mail_domain, local_part="info", password=demo.password,
                                         quota_mb=2048)  # fmt: skip

    _in_tenant(demo, make)


NO_DB_SERVER = (
    "No database server for the demo: `make run` starts a MariaDB under var/ when the local node's "
    "packages are installed (not with MPANEL_LOCAL_NODE_PACKAGES=0); the Databases screen stays empty."
)


def demo_db_server() -> dict | None:
    """The demo's database server as `scripts/run.sh` started it (MariaDB under var/ on a loopback
    port), from MPANEL_DEMO_DB_*; None when it started none (the local node's packages skipped).

    Read from the environment rather than settings: it describes a server of this one run, not of
    the panel (an operator adds real servers in the admin or the API)."""
    port = os.environ.get("MPANEL_DEMO_DB_PORT", "")
    if not port:
        return None
    return {
        "engine": os.environ.get("MPANEL_DEMO_DB_ENGINE", "mariadb"),
        "host": os.environ.get("MPANEL_DEMO_DB_HOST", "127.0.0.1"),
        "port": int(port),
        "admin_user": os.environ.get("MPANEL_DEMO_DB_USER", "mpanel_admin"),
        "admin_password": os.environ.get("MPANEL_DEMO_DB_PASSWORD", ""),
    }


def database(demo: Demo) -> None:
    """The demo's database server (see ``demo_db_server``) and a database on it, or a note saying
    why there is none: the seed never points a server at an address where nothing listens."""

    def make() -> None:
        server = DatabaseServer.objects.first()
        if server is None:
            conf = demo_db_server()
            if conf is None:
                demo.notes.append(NO_DB_SERVER)
                return
            server = database_services.server_create(tenant=demo.tenant, node=demo.node, **conf)
        if not Database.objects.filter(server=server, name="shop").exists():
            database_services.database_create(tenant=demo.tenant, server=server, name="shop")

    _in_tenant(demo, make)


# --- security --------------------------------------------------------------------------------------


@transaction.atomic
def security_events(demo: Demo) -> None:
    """A failed login from an unknown address and a success: the security center's list is not empty."""
    if SecurityEvent.objects.filter(reason="seed_demo_wrong_password").exists():
        return
    owner = get_user_model().objects.get(email="owner@demo.mpanel.local")
    record_event(EventType.LOGIN_FAILURE, user=owner, actor=None, reason="seed_demo_wrong_password",
                 data={"ip": "203.0.113.7"})  # fmt: skip
    record_event(EventType.LOGIN_SUCCESS, user=owner, actor=None, reason="seed_demo")


def counts_of_every_screen(tenant: Tenant) -> dict[str, int]:
    """How many rows each screen shows for the demo tenant (the seed's own check, and the tests')."""
    with tenant_scope(tenant):
        return {
            "customers": Customer.objects.count(),
            "products": Product.objects.count(),
            "invoices": Invoice.objects.count(),
            "subscriptions": Subscription.objects.count(),
            "pods": CloudPod.objects.count(),
            "websites": Website.objects.count(),
            "domains": Domain.objects.count(),
            "zones": Zone.objects.count(),
            "mailboxes": Mailbox.objects.count(),
            "databases": Database.objects.count(),
        }
