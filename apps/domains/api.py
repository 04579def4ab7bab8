"""/api/v1/hosting/domains. Roles: reads MEMBER+; create, update, delete and verify ADMIN+; renew
BILLING+ (it costs money); transfer out OWNER (ownership leaves the tenant).

Registrar calls are jobs: create and a nameserver change answer the job they stored
in ``job``; renew and transfer-out answer 202 with it. ``registrar_state`` says where it stands."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from . import services
from .models import Domain, DomainSettings, DomainStatus
from .serializers import (
    DomainCreateSerializer,
    DomainSerializer,
    DomainSettingsInputSerializer,
    DomainSettingsSerializer,
    DomainUpdateSerializer,
    RenewSerializer,
)


class DomainFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=DomainStatus.choices)
    expires_before = filters.DateFilter(field_name="expires_at", lookup_expr="lt")

    class Meta:
        model = Domain
        fields = ["status", "customer", "registrar", "auto_renew", "expires_before"]


class DomainViewSet(ResourceViewSet):
    """Domains. Registrar calls are jobs: create and a nameserver change answer the job they stored
    in ``job``; renew and transfer-out answer 202 with it."""

    queryset = Domain.objects.all()
    serializer_class = DomainSerializer
    input_serializers = {"create": DomainCreateSerializer, "update": DomainUpdateSerializer, "renew": RenewSerializer}
    destroy_answers_object = False
    filterset_class = DomainFilter
    search_fields = ["name"]
    ordering_fields = ["name", "expires_at", "created_at", "status"]
    ordering = ["name"]
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

    @staticmethod
    def current(domain: Domain) -> Domain:
        """The domain as it is now, with the job this request stored: where jobs run in-process (the
        embedded default) the registrar's answer is in already."""
        job = getattr(domain, "job", None)
        domain.refresh_from_db()
        if job is not None:
            job.refresh_from_db()
        domain.job = job
        return domain

    def create_resource(self, data):
        return self.current(services.domain_create(tenant=self.tenant, actor=self.request.user, **data))

    def update_resource(self, obj, data):
        return self.current(services.domain_update(domain=obj, data=data, actor=self.request.user))

    def destroy_resource(self, obj):
        services.domain_delete(domain=obj, actor=self.request.user)

    @extend_schema(request=None, responses={200: DomainSerializer}, summary="Check the ownership TXT record")
    @action(detail=True, methods=["post"])
    def verify(self, request, pk=None):
        return self.answer(services.domain_verify(domain=self.get_object(), actor=request.user))

    @extend_schema(request=RenewSerializer, responses={202: DomainSerializer},
                   summary="Renew through the registrar (a job; it bills the renewal)")  # fmt: skip
    @action(detail=True, methods=["post"])
    def renew(self, request, pk=None):
        domain = self.get_object()
        domain = services.domain_renew(domain=domain, years=self.validated()["years"], actor=request.user)
        return self.answer(self.current(domain), status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: DomainSerializer}, summary="Transfer the domain out (a job)")
    @action(detail=True, methods=["post"], url_path="transfer-out", url_name="transfer-out")
    def transfer_out(self, request, pk=None):
        domain = services.domain_transfer_out(domain=self.get_object(), actor=request.user)
        return self.answer(self.current(domain), status.HTTP_202_ACCEPTED)


class DomainSettingsViewSet(ResourceViewSet):
    """The tenant's domain settings: `GET /domains/settings` (BILLING+), `PUT|PATCH` (ADMIN+; fields
    left out keep their value), through the service the admin uses (audited; EPP secrets stored
    encrypted and never answered)."""

    serializer_class = DomainSettingsSerializer
    queryset = DomainSettings.objects.all()  # one row per tenant, addressed without an id
    input_serializers = {"update": DomainSettingsInputSerializer}
    required_roles = {"retrieve": Role.BILLING, "update": Role.ADMIN, "partial_update": Role.ADMIN}

    @extend_schema(responses={200: DomainSettingsSerializer}, summary="The tenant's domain settings")
    def retrieve(self, request, *args, **kwargs):
        return self.answer(services.settings_of(self.tenant))

    @extend_schema(request=DomainSettingsInputSerializer, responses={200: DomainSettingsSerializer},
                   summary="Change domain settings (fields left out keep their value)")  # fmt: skip
    def update(self, request, *args, **kwargs):
        data = self.validated(partial=True)
        return self.answer(services.domain_settings_update(tenant=self.tenant, data=data, actor=request.user))

    @extend_schema(request=DomainSettingsInputSerializer, responses={200: DomainSettingsSerializer},
                   summary="Change domain settings (fields left out keep their value)")  # fmt: skip
    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, **kwargs)
