"""Named reads of hosting: accounts with their usage, in one query for a whole page."""

from __future__ import annotations

from django.db.models import CharField, Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Cast, Coalesce

from apps.billing.models import Subscription
from apps.cloudpods.models import LIVE as POD_LIVE
from apps.cloudpods.models import CloudPod
from apps.databases.models import Database
from apps.mail.models import Mailbox
from apps.websites.models import Website, WebsiteStatus


def _count(queryset) -> Coalesce:
    counted = queryset.order_by().values("tenant_id").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def with_usage(queryset: QuerySet) -> QuerySet:
    """Annotate each account with what its customer has made (``used_websites``, ``used_mailboxes``,
    ``used_databases``, ``used_pods``)."""
    sites = Website.all_tenants.filter(tenant_id=OuterRef("tenant_id"), customer_id=OuterRef("customer_id")).exclude(
        status=WebsiteStatus.DELETED
    )
    boxes = Mailbox.all_tenants.filter(
        tenant_id=OuterRef("tenant_id"), mail_domain__customer_id=OuterRef("customer_id")
    )
    databases = Database.all_tenants.filter(tenant_id=OuterRef("tenant_id"), customer_id=OuterRef("customer_id"))
    subs = (
        Subscription.all_tenants.filter(
            tenant_id=OuterRef(OuterRef("tenant_id")), customer_id=OuterRef(OuterRef("customer_id"))
        )
        .annotate(ref=Cast("pk", CharField()))
        .values("ref")
    )
    pods = CloudPod.all_tenants.filter(tenant_id=OuterRef("tenant_id"), status__in=POD_LIVE, subscription__in=subs)
    return queryset.annotate(
        used_websites=_count(sites), used_mailboxes=_count(boxes), used_databases=_count(databases),
        used_pods=_count(pods),
    )  # fmt: skip
