"""/api/v1/hosting/name-delegations: the names a tenant lets another tenant take under its own.

ADMIN+ for everything (it gives part of the tenant's names away). ``grantee`` is the other
tenant's id, which that tenant tells the holder (it is its ``X-Tenant-ID``)."""

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from . import services
from .models import NameDelegation
from .serializers import NameDelegationSerializer


class NameDelegationViewSet(ResourceViewSet):
    """Delegations this tenant granted. Delete is refused (409) while the grantee holds names in the tree."""

    queryset = NameDelegation.objects.all()
    serializer_class = NameDelegationSerializer
    input_serializers = {"create": NameDelegationSerializer}
    destroy_answers_object = False
    filterset_fields = ["name", "grantee"]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    required_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN, "create": Role.ADMIN, "destroy": Role.ADMIN}

    def create_resource(self, data):
        return services.delegation_create(tenant=self.tenant, name=data["name"], grantee=data["grantee_id"],
                                          actor=self.request.user)  # fmt: skip

    def destroy_resource(self, obj):
        services.delegation_delete(delegation=obj, actor=self.request.user)
