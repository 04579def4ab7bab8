"""What a portal user may read: always ONE customer's rows, inside the tenant's scope.

Every query here filters by the customer: another customer's row (same tenant or not) is simply not
found, and the pages and the portal API answer 404 for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import QuerySet

from apps.billing.models import Invoice, InvoiceStatus, Subscription, SubscriptionStatus
from apps.billing.services.credit import credit_balances
from apps.catalog.models import Product, ProductType, Visibility
from apps.cloudpods.models import CloudPod
from apps.customers.models import Contact, Customer
from apps.databases.models import Database, DatabaseGrant, DatabaseUser, ObjectStatus
from apps.domains.models import Domain, RegistrarStatus
from apps.hosting import services as hosting_services
from apps.hosting.models import HostingAccount
from apps.mail.models import Mailbox, MailDomain
from apps.orders.models import Order
from apps.websites.models import Website

from .models import PortalSession, PortalUser

PAYABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)


def invoices_of(customer: Customer) -> QuerySet[Invoice]:
    """The customer's issued invoices (drafts are the staff's work in progress: never shown)."""
    return (
        Invoice.objects.filter(customer=customer)
        .exclude(status=InvoiceStatus.DRAFT)
        .order_by("-issue_date", "-created_at")
    )


def invoices_due(customer: Customer) -> QuerySet[Invoice]:
    return invoices_of(customer).filter(status__in=PAYABLE, amount_due__gt=0).order_by("due_date")


def invoice_of(customer: Customer, pk) -> Invoice | None:
    return invoices_of(customer).prefetch_related("lines", "payments").filter(pk=pk).first()


def subscriptions_of(customer: Customer) -> QuerySet[Subscription]:
    return Subscription.objects.filter(customer=customer).select_related("product", "customer").order_by("-created_at")


def subscription_of(customer: Customer, pk) -> Subscription | None:
    return subscriptions_of(customer).filter(pk=pk).first()


def plan_choices(sub: Subscription) -> list[Product]:
    """The plans a customer may move ``sub`` to, on the pages and the portal API alike: the public
    products of its type that can be ordered now, and the one it runs."""
    return [
        p
        for p in Product.objects.filter(type=sub.product.type, visibility=Visibility.PUBLIC).order_by("name")
        if p.is_orderable or p.pk == sub.product_id
    ]


def plan_choice(sub: Subscription, pk) -> Product | None:
    return next((p for p in plan_choices(sub) if str(p.pk) == str(pk)), None)


def orders_of(customer: Customer) -> QuerySet[Order]:
    return Order.objects.filter(customer=customer).prefetch_related("items", "items__product")


def order_of(customer: Customer, pk) -> Order | None:
    return orders_of(customer).filter(pk=pk).first()


def pods_of(customer: Customer, subscription: Subscription | None = None) -> QuerySet[CloudPod]:
    """Pods sold under the customer's subscriptions (a pod names its subscription by id)."""
    subs = [str(pk) for pk in Subscription.objects.filter(customer=customer).values_list("pk", flat=True)]
    if subscription is not None:
        subs = [s for s in subs if s == str(subscription.pk)]
    return CloudPod.objects.filter(subscription__in=subs).exclude(status="deleted")


def pod_of(customer: Customer, pk) -> CloudPod | None:
    return pods_of(customer).filter(pk=pk).first()


def mailbox_of(customer: Customer, pk) -> Mailbox | None:
    return Mailbox.objects.filter(mail_domain__customer=customer, pk=pk).select_related("mail_domain").first()


def domain_of(customer: Customer, pk) -> Domain | None:
    return Domain.objects.filter(customer=customer, pk=pk).first()


@dataclass
class Resources:
    pods: list = field(default_factory=list)
    websites: list = field(default_factory=list)
    domains: list = field(default_factory=list)
    mail_domains: list = field(default_factory=list)  # (mail domain, [mailboxes])

    @property
    def empty(self) -> bool:
        return not (self.pods or self.websites or self.domains or self.mail_domains)


def resources_of(customer: Customer) -> Resources:
    """What the customer's services run: pods, websites with their hostnames, domains, mailboxes."""
    mail = list(MailDomain.objects.filter(customer=customer).order_by("name"))
    boxes: dict = {}
    for box in Mailbox.objects.filter(mail_domain__in=mail).select_related("mail_domain"):
        boxes.setdefault(box.mail_domain_id, []).append(box)
    return Resources(
        pods=list(pods_of(customer).order_by("name")),
        websites=list(Website.objects.filter(customer=customer).exclude(status="deleted").order_by("primary_domain")),
        domains=list(Domain.objects.filter(customer=customer).order_by("name")),
        mail_domains=[(d, boxes.get(d.pk, [])) for d in mail],
    )


@dataclass
class Dashboard:
    services: list
    due: list
    due_total: dict[str, Decimal]
    credit: dict[str, Decimal]


def dashboard(user: PortalUser) -> Dashboard:
    customer = user.customer
    live = subscriptions_of(customer).exclude(status=SubscriptionStatus.CANCELLED)[:50]
    due, totals, credit = [], {}, {}
    if user.sees_money:
        due = list(invoices_due(customer)[:20])
        for invoice in due:
            totals[invoice.currency] = totals.get(invoice.currency, Decimal(0)) + invoice.amount_due
        credit = credit_balances(customer=customer)
    return Dashboard(services=list(live), due=due, due_total=totals, credit=credit)


def users_of(customer: Customer) -> QuerySet[PortalUser]:
    return PortalUser.objects.filter(customer=customer).order_by("email")


def sessions_of(user: PortalUser) -> QuerySet[PortalSession]:
    return PortalSession.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at")


# --- the service pages' reads (apps/portal/service_views.py and the portal API) ---------------------


def databases_of(customer: Customer) -> QuerySet[Database]:
    """The customer's databases (made for it: ``Database.customer``), with their server."""
    return (
        Database.objects.filter(customer=customer)
        .exclude(status=ObjectStatus.REMOVING)
        .select_related("server")
        .order_by("name")
    )


def database_users_of(customer: Customer) -> QuerySet[DatabaseUser]:
    """Logins granted on the customer's databases and on nothing else: a login the tenant shares with
    another customer (or uses for its own databases) is not the customer's to reset, so it is absent."""
    others = DatabaseGrant.objects.exclude(database__customer=customer).values("user_id")
    return (
        DatabaseUser.objects.filter(grants__database__customer=customer)
        .exclude(pk__in=others)
        .exclude(status=ObjectStatus.REMOVING)
        .select_related("server")
        .distinct()
        .order_by("name")
    )


def database_user_of(customer: Customer, pk) -> DatabaseUser | None:
    return database_users_of(customer).filter(pk=pk).first()


def database_rows(customer: Customer) -> list[tuple[Database, list[DatabaseUser]]]:
    """Each database with the customer's own logins granted on it (one query each for both)."""
    dbs = list(databases_of(customer))
    own = {u.pk: u for u in database_users_of(customer)}
    by_db: dict = {}
    for grant in DatabaseGrant.objects.filter(database__in=dbs, user_id__in=list(own)).exclude(
        status=ObjectStatus.REMOVING
    ):
        by_db.setdefault(grant.database_id, []).append(own[grant.user_id])
    return [(db, by_db.get(db.pk, [])) for db in dbs]


def contacts_of(customer: Customer) -> QuerySet[Contact]:
    return Contact.objects.filter(customer=customer).order_by("created_at")


def contact_of(customer: Customer, pk) -> Contact | None:
    return contacts_of(customer).filter(pk=pk).first()


def hosting_usage(subscription: Subscription) -> list[dict] | None:
    """The hosting account of ``subscription`` (None: not a hosting plan, or not made yet): each
    counted limit with what the customer uses of it."""
    account = hosting_services.account_of(subscription)
    if account is None:
        return None
    usage = hosting_services.account_usage(account)
    return [
        {"key": key, "label": USAGE_LABELS.get(key, key), "used": row["used"], "limit": row["limit"]}
        for key, row in usage.items()
    ]


USAGE_LABELS = {
    "websites": "Websites",
    "mailboxes": "Mailboxes",
    "databases": "Databases",
    "pods": "CloudPods",
    "disk_quota_mb": "Disk (MB)",
}
# What a provisioned part answers when it is ready for the customer to use.
READY = ("active", RegistrarStatus.OK)


def provisioning_of(sub: Subscription) -> list[dict]:
    """What a paid subscription has made so far, each part with its state, so that the order page says
    "live" only when the website serves, the mail domain is on its node and the registry has the
    domain (not merely when the invoice is paid: the jobs may still run, or have failed)."""
    parts: list[dict] = []
    if sub.product.type == ProductType.HOSTING_PLAN:
        account = HostingAccount.objects.filter(subscription=sub).select_related("website", "mail_domain").first()
        if account is None:
            return [{"name": "Hosting account", "status": "pending"}]
        parts.append({"name": "Hosting account", "status": account.status})
        if account.website is not None:
            parts.append({"name": f"Website {account.website.primary_domain}", "status": account.website.status})
        if account.mail_domain is not None:
            parts.append({"name": f"Mail for {account.mail_domain.name}", "status": account.mail_domain.status})
    domain = Domain.objects.filter(subscription=sub).first()
    if domain is not None:
        parts.append({"name": f"Domain {domain.name}", "status": domain.registrar_state})
    elif sub.product.type == ProductType.DOMAIN:
        parts.append({"name": "Domain registration", "status": "pending"})
    return parts
