from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from apps.nodes.models import Node
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantScopedViewSet

from . import selectors


class _OpsSummaryViewSet(TenantScopedViewSet):
    """Tenant ADMIN+ see their tenant; operators naming no tenant see the whole platform."""

    queryset = Node.objects.all()  # only for the 404-before-403 check of the base class
    operators_see_all = True
    pagination_class = None
    filter_backends: list = []
    required_roles = {"list": Role.ADMIN}
    selector = None

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def list(self, request):
        return Response(type(self).selector(self.tenant))


class PlatformOverviewViewSet(_OpsSummaryViewSet):
    """``/ops/platform-overview``: pods by status and plan, node capacity, jobs of the last 24 hours."""

    selector = staticmethod(selectors.platform_overview)


class OverviewViewSet(_OpsSummaryViewSet):
    """``/ops/overview``: the short summary (counts)."""

    selector = staticmethod(selectors.overview)
