"""/api/v1/hosting/name-delegations: the names a tenant lets another tenant take under its own.

ADMIN+ for everything (it gives part of the tenant's names away). ``grantee`` is the other
tenant's id, which that tenant tells the holder (it is its ``X-Tenant-ID``)."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantModelViewSet

from . import services
from .models import NameDelegation
from .serializers import NameDelegationSerializer


class NameDelegationViewSet(TenantModelViewSet):
    """Delegations this tenant granted. Delete is refused (409) while the grantee holds names in the tree."""

    queryset = NameDelegation.objects.all()
    serializer_class = NameDelegationSerializer
    filterset_fields = ["name", "grantee"]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    http_method_names = ["get", "post", "delete", "head", "options"]
    required_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN, "create": Role.ADMIN, "destroy": Role.ADMIN}

    @extend_schema(request=NameDelegationSerializer, responses={201: NameDelegationSerializer})
    def create(self, request):
        serializer = NameDelegationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        delegation = services.delegation_create(tenant=self.tenant, name=data["name"], grantee=data["grantee_id"],
                                                actor=request.user)  # fmt: skip
        return Response(NameDelegationSerializer(delegation).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.delegation_delete(delegation=instance, actor=self.request.user)
