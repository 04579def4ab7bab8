from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantScopedViewSet

from . import services
from .models import Website, WebsiteStatus
from .serializers import WebsiteCreateSerializer, WebsiteSerializer, WebsiteUpdateSerializer


class WebsiteFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=WebsiteStatus.choices)
    domain = filters.CharFilter(field_name="domain_rows__name", lookup_expr="iexact")

    class Meta:
        model = Website
        fields = ["status", "node", "customer", "php_version", "domain"]


class WebsiteViewSet(TenantScopedViewSet):
    """Websites (docs/api.md, "Who calls it"): MEMBER+ read; ADMIN+ create, update, suspend, resume, delete.

    Changes answer at once with the site's new state; a website.* job renders and checks the
    nginx configuration on the node.
    """

    queryset = Website.objects.select_related("node")
    serializer_class = WebsiteSerializer
    filterset_class = WebsiteFilter
    search_fields = ["primary_domain", "aliases", "site_id"]
    ordering_fields = ["created_at", "primary_domain", "status"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
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

    def get_serializer_class(self):
        return {
            "create": WebsiteCreateSerializer,
            "update": WebsiteUpdateSerializer,
            "partial_update": WebsiteUpdateSerializer,
        }.get(self.action, WebsiteSerializer)

    def _answer(self, site, code=status.HTTP_200_OK):
        return Response(WebsiteSerializer(site).data, status=code)

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(WebsiteSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return self._answer(self.get_object())

    @extend_schema(request=WebsiteCreateSerializer, responses={201: WebsiteSerializer})
    def create(self, request):
        serializer = WebsiteCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        site = services.website_create(tenant=self.tenant, actor=request.user, **serializer.validated_data)
        return self._answer(site, status.HTTP_201_CREATED)

    @extend_schema(request=WebsiteUpdateSerializer, responses={200: WebsiteSerializer})
    def update(self, request, pk=None, partial=False):
        site = self.get_object()
        serializer = WebsiteUpdateSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return self._answer(services.website_update(website=site, data=serializer.validated_data, actor=request.user))

    @extend_schema(request=WebsiteUpdateSerializer, responses={200: WebsiteSerializer})
    def partial_update(self, request, pk=None):
        return self.update(request, pk, partial=True)

    @extend_schema(request=None, responses={202: WebsiteSerializer}, summary="Delete the website (a job removes it)")
    def destroy(self, request, pk=None):
        site = services.website_delete(website=self.get_object(), actor=request.user)
        return self._answer(site, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: WebsiteSerializer}, summary="Serve the suspension page (503)")
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None):
        site = services.website_suspend(website=self.get_object(), actor=request.user)
        return self._answer(site, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: WebsiteSerializer}, summary="Serve the site again")
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        site = services.website_resume(website=self.get_object(), actor=request.user)
        return self._answer(site, status.HTTP_202_ACCEPTED)
