import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.jobs.api import ProvisioningViewSet
from apps.jobs.models import Job, JobStatus
from apps.tenancy.api import InvitationViewSet, MemberViewSet, UserViewSet
from apps.tenancy.audit_api import AuditEventViewSet
from apps.tenancy.models import Invitation, Membership
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.conftest import make_user


class TestUserApi(ApiTestCase):
    viewset = UserViewSet
    basename = "user"
    roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER}

    def make(self, fx, seq):
        user = make_user(f"extra{seq}@example.com")
        return Membership.objects.create(tenant=fx.tenant, user=user, role=Role.VIEWER)

    def lookup(self, obj):
        return str(obj.user_id)

    def state_of(self, obj):
        return {"role": Membership.objects.get(pk=obj.pk).role}


class TestMemberApi(ApiTestCase):
    viewset = MemberViewSet
    basename = "tenant-member"
    roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    @pytest.fixture(autouse=True)
    def _fx(self, tenant_a):
        self.fx = tenant_a

    def url_kwargs(self, fx):
        return {"tenant_pk": str(fx.tenant.pk)}

    def make(self, fx, seq):
        user = make_user(f"m{seq}@example.com")
        return Membership.objects.create(tenant=fx.tenant, user=user, role=Role.MEMBER)

    def create_payload(self, fx, seq):
        user = make_user(f"joiner{seq}@example.com")
        return {"email": user.email, "role": "MEMBER"}

    def update_payload(self, fx, obj, seq):
        return {"role": "BILLING"}

    def state_of(self, obj):
        m = Membership.objects.filter(pk=obj.pk).first()
        return m and {"role": m.role}

    def created_object(self, response):
        # Adding a member invites them: the object created is the invitation.
        return Invitation.objects.get(pk=response.data["id"])


class TestInvitationApi(ApiTestCase):
    viewset = InvitationViewSet
    basename = "tenant-invitation"
    roles = {"list": Role.ADMIN, "destroy": Role.ADMIN}

    def url_kwargs(self, fx):
        return {"tenant_pk": str(fx.tenant.pk)}

    def make(self, fx, seq):
        return Invitation.objects.create(
            tenant=fx.tenant, email=f"inv{seq}@example.com", role=Role.MEMBER, token_hash=f"{seq:064d}"
        )

    def state_of(self, obj):
        i = Invitation.objects.get(pk=obj.pk)
        return {"revoked_at": i.revoked_at}


class TestAuditApi(ApiTestCase):
    viewset = AuditEventViewSet
    basename = "audit"
    roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN}

    def make(self, fx, seq):
        return AuditEvent.objects.create(tenant=fx.tenant, action="customer.create", object_id=str(seq))


class TestProvisioningApi(ApiTestCase):
    viewset = ProvisioningViewSet
    basename = "job"
    roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN}

    def make(self, fx, seq):
        return Job.objects.create(
            tenant=fx.tenant, type="test.record", payload={"key": f"k{seq}"}, status=JobStatus.FAILED
        )


@pytest.mark.django_db
class TestAuditFilters:
    def test_only_own_tenant_events_and_filters(self, tenant_a, tenant_b, api):
        AuditEvent.objects.create(tenant=tenant_a.tenant, action="customer.create")
        AuditEvent.objects.create(tenant=tenant_a.tenant, action="customer.update")
        AuditEvent.objects.create(tenant=tenant_b.tenant, action="customer.create")
        AuditEvent.objects.create(tenant=None, action="auth.login")
        client = api(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        url = reverse("audit-list")
        assert client.get(url).json()["count"] == 2
        assert client.get(url, {"action": "customer.update"}).json()["count"] == 1
        assert client.get(url, {"action_prefix": "customer."}).json()["count"] == 2
