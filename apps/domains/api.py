"""/api/v1/hosting/domains. Roles (docs/api.md, "Who calls it"): reads MEMBER+; create, update, delete and
verify ADMIN+; renew BILLING+ (it costs money); transfer out OWNER (ownership leaves the tenant).

Registrar calls are jobs (docs/api.md): create and a nameserver change answer the job they stored
in ``job``; renew and transfer-out answer 202 with it. ``registrar_state`` says where it stands."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantModelViewSet

from . import services
from .models import Domain, DomainStatus
from .serializers import DomainCreateSerializer, DomainSerializer, DomainUpdateSerializer, RenewSerializer


class DomainFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=DomainStatus.choices)
    expires_before = filters.DateFilter(field_name="expires_at", lookup_expr="lt")

    class Meta:
        model = Domain
        fields = ["status", "customer", "registrar", "auto_renew", "expires_before"]


class DomainViewSet(TenantModelViewSet):
    queryset = Domain.objects.all()
    serializer_class = DomainSerializer
    filterset_class = DomainFilter
    search_fields = ["name"]
    ordering_fields = ["name", "expires_at", "created_at", "status"]
    ordering = ["name"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
        "verify": Role.ADMIN,
        "renew": Role.BILLING,
        "transfer_out": Role.OWNER,
    }

    def get_serializer_class(self):
        return {
            "create": DomainCreateSerializer,
            "update": DomainUpdateSerializer,
            "partial_update": DomainUpdateSerializer,
            "renew": RenewSerializer,
        }.get(self.action, DomainSerializer)

    def perform_create(self, serializer):
        serializer.instance = services.domain_create(tenant=self.tenant, actor=self.request.user,
                                                     **serializer.validated_data)  # fmt: skip

    def _answer(self, domain, code=status.HTTP_200_OK):
        """The domain as it is now: where jobs run in-process (the embedded default) the registrar's
        answer is in already."""
        job = getattr(domain, "job", None)
        domain.refresh_from_db()
        if job is not None:
            job.refresh_from_db()
        domain.job = job
        return Response(DomainSerializer(domain).data, status=code)

    def create(self, request, *args, **kwargs):
        serializer = DomainCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        return self._answer(serializer.instance, status.HTTP_201_CREATED)

    @extend_schema(request=DomainUpdateSerializer, responses={200: DomainSerializer})
    def update(self, request, pk=None, partial=False):
        domain = self.get_object()
        serializer = DomainUpdateSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        domain = services.domain_update(domain=domain, data=serializer.validated_data, actor=request.user)
        return self._answer(domain)

    @extend_schema(request=DomainUpdateSerializer, responses={200: DomainSerializer})
    def partial_update(self, request, pk=None):
        return self.update(request, pk, partial=True)

    def perform_destroy(self, instance):
        services.domain_delete(domain=instance, actor=self.request.user)

    @extend_schema(request=None, responses={200: DomainSerializer}, summary="Check the ownership TXT record")
    @action(detail=True, methods=["post"])
    def verify(self, request, pk=None):
        return Response(DomainSerializer(services.domain_verify(domain=self.get_object(), actor=request.user)).data)

    @extend_schema(request=RenewSerializer, responses={202: DomainSerializer},
                   summary="Renew through the registrar (a job; it bills the renewal)")  # fmt: skip
    @action(detail=True, methods=["post"])
    def renew(self, request, pk=None):
        domain = self.get_object()
        serializer = RenewSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        domain = services.domain_renew(domain=domain, years=serializer.validated_data["years"], actor=request.user)
        return self._answer(domain, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: DomainSerializer}, summary="Transfer the domain out (a job)")
    @action(detail=True, methods=["post"], url_path="transfer-out", url_name="transfer-out")
    def transfer_out(self, request, pk=None):
        domain = services.domain_transfer_out(domain=self.get_object(), actor=request.user)
        return self._answer(domain, status.HTTP_202_ACCEPTED)
