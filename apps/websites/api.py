from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.decorators import action

from apps.common.exceptions import InvalidInput
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from . import services
from .models import Website, WebsiteStatus
from .serializers import WebsiteCreateSerializer, WebsiteSerializer, WebsiteUpdateSerializer


class WebsiteFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=WebsiteStatus.choices)
    domain = filters.CharFilter(field_name="domain_rows__name", lookup_expr="iexact")

    class Meta:
        model = Website
        fields = ["status", "node", "customer", "php_version", "domain"]


REVOKE_PARAMETER = OpenApiParameter(
    "revoke", bool, description="Revoke the certificates at their CA too (absent: the tenant's SSL setting)."
)


def revoke_flag(request) -> bool | None:
    """``?revoke=true|false`` on a delete; absent: None (the tenant's setting decides)."""
    raw = request.query_params.get("revoke")
    if raw is None:
        return None
    try:
        return serializers.BooleanField().to_internal_value(raw)
    except serializers.ValidationError:
        raise InvalidInput("revoke: true or false.", field="revoke") from None


# The base generates the standard routes' schema; DELETE's summary says what a 202 means here.
@extend_schema_view(
    destroy=extend_schema(summary="Delete the website (a job removes it)", parameters=[REVOKE_PARAMETER])
)
class WebsiteViewSet(ResourceViewSet):
    """Websites: MEMBER+ read; ADMIN+ create, update, suspend, resume, delete.

    Changes answer at once with the site's new state; a job then writes and checks the web server's
    configuration on the node.
    """

    queryset = Website.objects.select_related("node")
    serializer_class = WebsiteSerializer
    input_serializers = {"create": WebsiteCreateSerializer, "update": WebsiteUpdateSerializer}
    filterset_class = WebsiteFilter
    search_fields = ["primary_domain", "aliases", "site_id"]
    ordering_fields = ["created_at", "primary_domain", "status"]
    ordering = ["-created_at"]
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
        "suspend": Role.ADMIN,
        "resume": Role.ADMIN,
    }

    def create_resource(self, data):
        return services.website_create(tenant=self.tenant, actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return services.website_update(website=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        # ?revoke=true|false: revoke the site's certificates at their CA (absent: the tenant's SSL setting).
        return services.website_delete(website=obj, actor=self.request.user,
                                       revoke_certificates=revoke_flag(self.request))  # fmt: skip

    @extend_schema(request=None, responses={202: WebsiteSerializer}, summary="Serve the suspension page (503)")
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None):
        site = services.website_suspend(website=self.get_object(), actor=request.user)
        return self.answer(site, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: WebsiteSerializer}, summary="Serve the site again")
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        site = services.website_resume(website=self.get_object(), actor=request.user)
        return self.answer(site, status.HTTP_202_ACCEPTED)
