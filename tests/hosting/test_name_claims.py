"""Cross-tenant claims on names (apps/names/claims.py), through the API of every module that takes one.

Tenant A holds a name (through each module that holds names: HOLDERS); tenant B tries to take a
related name (through each path that takes one: TAKERS, creates, renames and alias additions).
Equal, under and above are refused with 409 ``name_taken`` without saying who holds it or what;
siblings, names that merely end with the same letters, other registrable domains, the same
tenant, and any tenant once the holding is gone are not. A new module is one line in HOLDERS (if
it holds names) and one in TAKERS (for each path that takes one).

Domain ownership lookups in the matrix answer every tenant's challenge (a resolver pointed at a
shared server would): the claim rule must refuse whatever DNS says. The real lookup, against a
real PowerDNS, is in ``test_verification_ignores_a_challenge_in_another_tenants_zone`` below and in
tests/hosting/test_domains.py."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.dns import services as dns_services
from apps.dns.models import Zone
from apps.domains import services as domain_services
from apps.domains import verification
from apps.domains.models import Domain
from apps.jobs import services as job_services
from apps.jobs.models import Job, JobStatus
from apps.jobs.services import run_job
from apps.mail import services as mail_services
from apps.mail.models import MailDomain
from apps.names import claims
from apps.names.api import NameDelegationViewSet
from apps.names.models import NameDelegation
from apps.nodes.models import Node
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from apps.websites import services as website_services
from apps.websites.models import Website
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401

_own = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_dkim(settings):
    settings.MPANEL_DKIM_KEY_BITS = 1024


@pytest.fixture
def no_dispatch(monkeypatch):
    """Jobs are stored, not sent: the panel's side only."""
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


@pytest.fixture
def any_challenge_answers(monkeypatch):
    """A resolver that answers every tenant's challenge for a name (as a shared server could)."""

    def lookup(name: str) -> list[str]:
        domain = name.removeprefix("_mpanel-challenge.").rstrip(".")
        return [d.challenge_value for d in Domain.all_tenants.filter(name=domain)]

    monkeypatch.setattr(verification, "txt_values", lookup)


def node_in(fx) -> Node:
    """One local node per tenant with every role that serves names (all local nodes are this machine)."""
    with fx.scope():
        return Node.objects.filter(hostname="shared-1").first() or Node.objects.create(
            tenant=fx.tenant, hostname="shared-1", roles=["dns", "web", "mail"], vcpu=1, memory_mb=1024,
            disk_gb=10, max_pods=0,
        )  # fmt: skip


def own_name() -> str:
    return f"own{next(_own)}.unrelated.example"


# --- how tenant A holds a name (one line per module that holds names) ---------------------------


def hold_zone(fx, name):
    return dns_services.zone_create(tenant=fx.tenant, name=name, node=node_in(fx))


def hold_website(fx, name):
    return website_services.website_create(tenant=fx.tenant, primary_domain=name, node=node_in(fx))


def hold_alias(fx, name):
    return website_services.website_create(tenant=fx.tenant, primary_domain=own_name(), aliases=[name],
                                           node=node_in(fx))  # fmt: skip


def hold_mail(fx, name):
    return mail_services.mail_domain_create(tenant=fx.tenant, name=name, node=node_in(fx))


def hold_verified_domain(fx, name):
    domain = domain_services.domain_create(tenant=fx.tenant, name=name)
    return domain_services.domain_verify(domain=domain)


HOLDERS: dict[str, Callable] = {
    "zone": hold_zone,
    "website": hold_website,
    "website-alias": hold_alias,
    "mail-domain": hold_mail,
    "verified-domain": hold_verified_domain,
}


def release(obj) -> None:
    """Tenant A gives the name up (the zone's own delete job is run against PowerDNS below)."""
    if isinstance(obj, Website):
        website_services.website_delete(website=obj)
    elif isinstance(obj, MailDomain):
        mail_services.mail_domain_delete(mail_domain=obj)
    elif isinstance(obj, Domain):
        domain_services.domain_delete(domain=obj)
    else:
        raise AssertionError(f"no release for {obj!r}")


# --- how tenant B takes a name (one line per path that takes one) -------------------------------


def _site(client, primary, aliases=()):
    response = client.post(reverse("website-list"), {"primary_domain": primary, "aliases": list(aliases)},
                           format="json")  # fmt: skip
    assert response.status_code == 201, response.content
    return reverse("website-detail", kwargs={"pk": response.json()["id"]})


def take_verify(client, fx, name):
    """A domain row B stored while nobody held the name (an unverified one holds nothing), verified now."""
    with fx.scope():
        domain = Domain.objects.get_or_create(tenant=fx.tenant, name=claims.canonical(name))[0]
    return client.post(reverse("domain-verify", kwargs={"pk": domain.pk}))


TAKERS: dict[str, Callable] = {
    "zone": lambda c, fx, n: c.post(reverse("dns-zone-list"), {"name": n}, format="json"),
    "website": lambda c, fx, n: c.post(reverse("website-list"), {"primary_domain": n}, format="json"),
    "website-alias": lambda c, fx, n: c.post(
        reverse("website-list"), {"primary_domain": own_name(), "aliases": [n]}, format="json"
    ),
    "website-alias-added": lambda c, fx, n: c.patch(_site(c, own_name()), {"aliases": [n]}, format="json"),
    "website-renamed": lambda c, fx, n: c.patch(_site(c, own_name()), {"primary_domain": n}, format="json"),
    "mail-domain": lambda c, fx, n: c.post(reverse("mail-domain-list"), {"name": n}, format="json"),
    "domain": lambda c, fx, n: c.post(reverse("domain-list"), {"name": n}, format="json"),
    "domain-verify": take_verify,
}


@dataclass(frozen=True)
class Pair:
    label: str
    held: str
    wanted: str


REFUSED = [
    Pair("equal", "alpha.example", "alpha.example"),
    Pair("child", "alpha.example", "shop.alpha.example"),
    Pair("grandchild", "alpha.example", "a.b.alpha.example"),
    Pair("parent", "shop.alpha.example", "alpha.example"),
    Pair("grandparent", "a.b.alpha.example", "alpha.example"),
    Pair("case-and-dot", "alpha.example", "ALPHA.Example."),
    Pair("idn-held-unicode", "bücher.example", "xn--bcher-kva.example"),
    Pair("idn-held-alabel", "xn--bcher-kva.example", "shop.BÜCHER.example."),
    Pair("under-public-suffix", "alpha.co.uk", "shop.alpha.co.uk"),
]
ALLOWED = [
    Pair("sibling", "shop.alpha.example", "www2.alpha.example"),
    Pair("same-ending-letters", "alpha.example", "balpha.example"),
    Pair("public-suffix-sibling", "alpha.co.uk", "beta.co.uk"),
    Pair("other-registrable", "alpha.example", "alpha.example.net"),
]
CORE = {"equal", "child", "parent"}


def _cases(pairs):
    """Every holder x taker for the core relations; each other pair over every taker (a zone
    holding it) and over every holder (a zone taking it)."""
    out = []
    for pair in pairs:
        for holder in HOLDERS:
            for taker in TAKERS:
                if pair.label in CORE or holder == "zone" or taker == "zone":
                    out.append(pytest.param(holder, taker, pair, id=f"{pair.label}-{holder}-by-{taker}"))
    return out


def _setup(tenant_a, tenant_b, holder, held):
    node_in(tenant_a)
    node_in(tenant_b)
    with tenant_a.scope():
        return HOLDERS[holder](tenant_a, held)


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch", "any_challenge_answers")
class TestMatrix:
    @pytest.mark.parametrize(("holder", "taker", "pair"), _cases(REFUSED))
    def test_refused(self, tenant_a, tenant_b, holder, taker, pair):
        _setup(tenant_a, tenant_b, holder, pair.held)
        response = TAKERS[taker](client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant), tenant_b, pair.wanted)
        assert response.status_code == 409, response.content
        body = response.json()
        assert body["code"] == "name_taken"
        # Nothing says who holds it, nor what kind of object does.
        for leak in (tenant_a.tenant.name, str(tenant_a.tenant.pk), tenant_a.tenant.slug, "zone", "website",
                     "mail", "verified"):  # fmt: skip
            assert leak.lower() not in body["detail"].lower()
        assert claims.held_by(tenant_b.tenant.pk, claims.canonical(pair.wanted)) == []  # B holds nothing of it
        assert not Domain.all_tenants.filter(tenant=tenant_b.tenant, verified_at__isnull=False).exists()

    @pytest.mark.parametrize(("holder", "taker", "pair"), _cases(ALLOWED))
    def test_allowed(self, tenant_a, tenant_b, holder, taker, pair):
        _setup(tenant_a, tenant_b, holder, pair.held)
        response = TAKERS[taker](client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant), tenant_b, pair.wanted)
        assert response.status_code in (200, 201), response.content

    @pytest.mark.parametrize("taker", TAKERS)
    @pytest.mark.parametrize("holder", HOLDERS)
    def test_the_same_tenant_takes_names_under_its_own(self, tenant_a, tenant_b, holder, taker):
        _setup(tenant_a, tenant_b, holder, "alpha.example")
        response = TAKERS[taker](client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant), tenant_a,
                                 "shop.alpha.example")  # fmt: skip
        assert response.status_code in (200, 201), response.content

    @pytest.mark.parametrize("taker", TAKERS)
    @pytest.mark.parametrize("holder", [h for h in HOLDERS if h != "zone"])
    def test_another_tenant_takes_the_name_once_it_is_released(self, tenant_a, tenant_b, holder, taker):
        held = _setup(tenant_a, tenant_b, holder, "alpha.example")
        client = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
        with tenant_a.scope():
            release(held)
        assert TAKERS[taker](client, tenant_b, "shop.alpha.example").status_code in (200, 201)

    def test_an_unverified_domain_holds_nothing(self, tenant_a, tenant_b):
        """Squatting: a registration nobody proved does not block the real owner."""
        node_in(tenant_b)
        with tenant_a.scope():
            domain_services.domain_create(tenant=tenant_a.tenant, name="alpha.example")
        client = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
        for taker in ("zone", "website", "mail-domain", "domain"):
            sub = "" if taker == "zone" else f"{taker}."
            assert TAKERS[taker](client, tenant_b, f"{sub}alpha.example").status_code == 201, taker
        # B's holdings now hold the tree: A's verification is refused even though DNS answers it.
        with tenant_a.scope():
            domain = Domain.objects.get(name="alpha.example")
        response = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant).post(
            reverse("domain-verify", kwargs={"pk": domain.pk})
        )
        assert response.status_code == 409 and response.json()["code"] == "name_taken"

    def test_a_lapsed_domain_holds_nothing(self, tenant_a, tenant_b):
        node_in(tenant_b)
        with tenant_a.scope():
            domain = hold_verified_domain(tenant_a, "alpha.example")
        client = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
        assert TAKERS["zone"](client, tenant_b, "alpha.example").status_code == 409
        Domain.all_tenants.filter(pk=domain.pk).update(status="expired")
        assert TAKERS["zone"](client, tenant_b, "alpha.example").status_code == 201

    @pytest.mark.parametrize("taker", TAKERS)
    @pytest.mark.parametrize("name", ["co.uk", "github.io", "example", "xn--55qx5d.cn"])
    def test_a_bare_public_suffix_is_nobodys(self, tenant_a, tenant_b, taker, name):
        node_in(tenant_a)
        response = TAKERS[taker](client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant), tenant_a, name)
        assert response.status_code == 400, response.content

    def test_a_wildcard_website_covers_its_tree(self, tenant_a, tenant_b, settings):
        settings.WEBSITES_ALLOW_WILDCARDS = True
        _setup(tenant_a, tenant_b, "website", "*.alpha.example")
        client = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
        for name in ("alpha.example", "shop.alpha.example", "*.shop.alpha.example"):
            assert TAKERS["website"](client, tenant_b, name).status_code == 409, name
        assert TAKERS["website"](client, tenant_b, "*.co.uk").status_code == 400
        assert TAKERS["website"](client, tenant_b, "beta.example").status_code == 201


# --- delegation -------------------------------------------------------------------------------


def delegations_url(obj=None) -> str:
    return reverse("name-delegation-detail", kwargs={"pk": obj}) if obj else reverse("name-delegation-list")


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch", "any_challenge_answers")
class TestDelegation:
    @pytest.mark.parametrize("taker", TAKERS)
    def test_a_delegated_tree_can_be_taken_and_nothing_else(self, tenant_a, tenant_b, taker):
        _setup(tenant_a, tenant_b, "zone", "alpha.example")
        b = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
        assert TAKERS[taker](b, tenant_b, "shop.alpha.example").status_code == 409
        a = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = a.post(delegations_url(), {"name": "Shop.Alpha.Example.", "grantee": str(tenant_b.tenant.pk)},
                          format="json")  # fmt: skip
        assert response.status_code == 201, response.content
        assert response.json()["name"] == "shop.alpha.example"
        assert AuditEvent.objects.filter(action="names.delegation.create", object_id=response.json()["id"]).exists()
        assert TAKERS[taker](b, tenant_b, "shop.alpha.example").status_code in (200, 201)
        assert TAKERS[taker](b, tenant_b, "x.shop.alpha.example").status_code in (200, 201)
        for outside in ("alpha.example", "www.alpha.example", "xshop.alpha.example"):
            assert TAKERS[taker](b, tenant_b, outside).status_code == 409, outside

    def test_only_a_held_tree_can_be_delegated_and_not_to_oneself(self, tenant_a, tenant_b):
        _setup(tenant_a, tenant_b, "zone", "alpha.example")
        a = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        grantee = str(tenant_b.tenant.pk)
        for payload, field in (
            ({"name": "beta.example", "grantee": grantee}, "name"),  # not A's
            ({"name": "co.uk", "grantee": grantee}, "name"),  # a public suffix
            ({"name": "shop.alpha.example", "grantee": str(tenant_a.tenant.pk)}, "grantee"),
            ({"name": "shop.alpha.example", "grantee": "00000000-0000-0000-0000-000000000000"}, "grantee"),
        ):
            response = a.post(delegations_url(), payload, format="json")
            assert response.status_code == 400, (payload, response.content)
            assert field in response.content.decode()
        assert not NameDelegation.all_tenants.exists()
        # A MEMBER may not give names away.
        member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        assert member.post(delegations_url(), {"name": "alpha.example", "grantee": grantee},
                           format="json").status_code == 403  # fmt: skip

    def test_revoking_waits_until_the_grantee_holds_nothing_in_the_tree(self, tenant_a, tenant_b):
        _setup(tenant_a, tenant_b, "zone", "alpha.example")
        a = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        grant = a.post(delegations_url(), {"name": "shop.alpha.example", "grantee": str(tenant_b.tenant.pk)},
                       format="json").json()  # fmt: skip
        b = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
        site = b.post(reverse("website-list"), {"primary_domain": "www.shop.alpha.example"}, format="json").json()
        response = a.delete(delegations_url(grant["id"]))
        assert response.status_code == 409 and response.json()["code"] == "delegation_in_use"
        with tenant_b.scope():
            website_services.website_delete(website=Website.objects.get(pk=site["id"]))
        assert a.delete(delegations_url(grant["id"])).status_code == 204
        assert AuditEvent.objects.filter(action="names.delegation.delete", object_id=grant["id"]).exists()
        assert TAKERS["website"](b, tenant_b, "www.shop.alpha.example").status_code == 409

    def test_the_holder_cannot_take_back_into_a_tree_it_delegated(self, tenant_a, tenant_b):
        _setup(tenant_a, tenant_b, "zone", "alpha.example")
        a = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        a.post(delegations_url(), {"name": "shop.alpha.example", "grantee": str(tenant_b.tenant.pk)}, format="json")
        b = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
        assert TAKERS["zone"](b, tenant_b, "shop.alpha.example").status_code == 201
        assert TAKERS["website"](a, tenant_a, "www.shop.alpha.example").status_code == 409
        # What A held before keeps working: its own zone still takes changes.
        with tenant_a.scope():
            zone = Zone.objects.get(name="alpha.example")
        assert a.patch(reverse("dns-zone-detail", kwargs={"pk": zone.pk}), {"default_ttl": 600},
                       format="json").status_code == 200  # fmt: skip


@pytest.mark.usefixtures("no_dispatch")
class TestNameDelegationApi(ApiTestCase):
    viewset = NameDelegationViewSet
    basename = "name-delegation"
    roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN, "create": Role.ADMIN, "destroy": Role.ADMIN}

    def _grantee(self):
        return Tenant.objects.get_or_create(slug="grantee", defaults={"name": "Grantee"})[0]

    def _held(self, fx, seq) -> str:
        name = f"held{seq}.example"
        dns_services.zone_create(tenant=fx.tenant, name=name, node=node_in(fx))
        return name

    def make(self, fx, seq):
        from apps.names import services

        return services.delegation_create(tenant=fx.tenant, name=self._held(fx, seq), grantee=self._grantee())

    def create_payload(self, fx, seq):
        with fx.scope():
            name = self._held(fx, seq)
        return {"name": f"sub.{name}", "grantee": str(self._grantee().pk)}

    def update_payload(self, fx, obj, seq):
        return {}


# --- verification: defence in depth, against a real PowerDNS ------------------------------------


@pytest.mark.django_db
def test_verification_ignores_a_challenge_in_another_tenants_zone(
    tenant_a,
    tenant_b,
    pdns_node_env,  # noqa: F811
    settings,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    """Zones made before the claim rule (it is switched off to make them): A serves alpha.example,
    B serves _mpanel-challenge.alpha.example with B's token, on the same PowerDNS. The resolver
    answers B's token, yet B's verification is refused: the answer comes from inside A's zone."""
    settings.MPANEL_DNS_RESOLVERS = [f"127.0.0.1:{pdns_node_env.dns_port}"]
    settings.MPANEL_DNS_RESOLVER_TIMEOUT = 3
    real_claim = claims.claim
    monkeypatch.setattr(claims, "claim", lambda tenant, names, **kw: list(names))
    with tenant_b.scope():
        domain = domain_services.domain_create(tenant=tenant_b.tenant, name="alpha.example")
    with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
        hold_zone(tenant_a, "alpha.example")
    with django_capture_on_commit_callbacks(execute=True), tenant_b.scope():
        zone = hold_zone(tenant_b, "_mpanel-challenge.alpha.example")
        dns_services.record_create(zone=zone, name="@", type="TXT", content=domain.challenge_value)
    assert verification.txt_values(domain.challenge_name) == [domain.challenge_value]  # the server answers it

    # Even with the claim rule off, the verification itself does not count that answer.
    client = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
    response = client.post(reverse("domain-verify", kwargs={"pk": domain.pk}))
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "verification_failed" and "another account" in response.json()["detail"]
    assert Domain.all_tenants.get(pk=domain.pk).verified_at is None
    assert AuditEvent.objects.filter(action="domain.verify_failed", object_id=str(domain.pk)).exists()
    # With the rule on, the claim refuses first.
    monkeypatch.setattr(claims, "claim", real_claim)
    response = client.post(reverse("domain-verify", kwargs={"pk": domain.pk}))
    assert response.status_code == 409 and response.json()["code"] == "name_taken"

    # A's own verification of its name, answered by its own zone, still counts.
    with tenant_a.scope():
        a_domain = domain_services.domain_create(tenant=tenant_a.tenant, name="mine.alpha.example")
        a_zone = Zone.objects.get(name="alpha.example")
    with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
        dns_services.record_create(zone=a_zone, name="_mpanel-challenge.mine", type="TXT",
                                   content=a_domain.challenge_value)  # fmt: skip
    response = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant).post(
        reverse("domain-verify", kwargs={"pk": a_domain.pk})
    )
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_a_deleted_zone_holds_until_its_server_dropped_it(
    tenant_a,
    tenant_b,
    pdns_node_env,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    node_in(tenant_a)
    node_in(tenant_b)
    a = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    b = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        zone = a.post(reverse("dns-zone-list"), {"name": "alpha.example"}, format="json").json()
    assert pdns_node_env.serial("alpha.example.") is not None
    with django_capture_on_commit_callbacks(execute=False):  # the delete job is stored, not run yet
        assert a.delete(reverse("dns-zone-detail", kwargs={"pk": zone["id"]})).status_code == 202
    assert TAKERS["zone"](b, tenant_b, "shop.alpha.example").status_code == 409  # still served
    job = Job.all_tenants.get(type="dns.zone.delete", status=JobStatus.PENDING)
    run_job(job.pk)
    assert not Zone.all_tenants.filter(pk=zone["id"]).exists()
    assert pdns_node_env.serial("alpha.example.") is None
    with django_capture_on_commit_callbacks(execute=True):
        assert TAKERS["zone"](b, tenant_b, "shop.alpha.example").status_code == 201
