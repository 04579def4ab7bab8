"""A demo tenant with one member of each role, a local node and a few customers; prints their logins.

In the console (the top layer) because it spans apps: tenancy, nodes and customers.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.customers import services as customer_services
from apps.customers.models import Customer
from apps.nodes.models import Node
from apps.nodes.services import node_create
from apps.tenancy.models import Membership, Tenant
from apps.tenancy.roles import ORDERED
from apps.tenancy.scoping import tenant_scope

DEMO_CUSTOMERS = [
    {"name": "Ada Lovelace", "email": "ada@example.com", "kind": "person", "country": "GB", "currency": "GBP"},
    {"name": "Grace Hopper", "email": "grace@example.com", "kind": "person", "country": "US"},
    {
        "name": "Acme Hosting Ltd",
        "company": "Acme Hosting Ltd",
        "email": "billing@acme.example",
        "kind": "company",
        "country": "DE",
        "currency": "EUR",
        "tax_id": "DE123456789",
    },
]


class Command(BaseCommand):
    help = "Create (or refresh) the demo tenant, one user per role, an operator, and a few customers."

    def add_arguments(self, parser):
        parser.add_argument("--password", default=None, help="Password for every demo login.")
        parser.add_argument("--if-empty", action="store_true", help="Do nothing when any tenant exists.")

    @transaction.atomic
    def handle(self, *args, password=None, if_empty=False, **options):
        if if_empty and Tenant.objects.exists():
            self.stdout.write("Tenants exist already; demo data left as it is (seed_demo to refresh it).")
            return
        password = password or getattr(settings, "MPANEL_DEMO_PASSWORD", None) or "mpanel-demo-2026"
        User = get_user_model()
        tenant, _ = Tenant.objects.get_or_create(slug="demo", defaults={"name": "Demo Hosting"})
        logins = []
        for role in reversed(ORDERED):
            email = f"{role.value.lower()}@demo.mpanel.local"
            user = User.objects.filter(email=email).first() or User.objects.create_user(email, password)
            user.set_password(password)
            user.full_name = f"Demo {role.label}"
            user.save()
            Membership.objects.update_or_create(tenant=tenant, user=user, defaults={"role": role})
            logins.append((role.value, email))
        operator = User.objects.filter(email="operator@mpanel.local").first() or User.objects.create_superuser(
            "operator@mpanel.local", password
        )
        operator.set_password(password)
        operator.save()
        with tenant_scope(tenant):
            if not Node.objects.exists():
                # The embedded default's own machine, as a node rooted under ./var/node.
                node_create(tenant=tenant, data={
                    "hostname": "local", "transport": "local", "roles": ["pods", "web", "dns", "mail", "db"],
                    "capacity": {"vcpu": 2, "memory_mb": 2048, "disk_gb": 20, "max_pods": 10},
                })  # fmt: skip
            for data in DEMO_CUSTOMERS:
                if not Customer.objects.filter(email=data["email"]).exists():
                    customer_services.customer_create(tenant=tenant, data=data)
        self.stdout.write(self.style.SUCCESS(f"Demo tenant: {tenant.name} (id {tenant.pk}), with a local node"))
        for role, email in logins:
            self.stdout.write(f"  {role:<8} {email}  /  {password}")
        self.stdout.write(f"  operator  operator@mpanel.local  /  {password}   (Django admin at /admin/)")
