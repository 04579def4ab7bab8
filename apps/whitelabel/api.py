"""``/api/v1/enterprise/white-label``: the tenant's brand (MEMBER+ read, ADMIN+ write), its logo,
and custom portal domains proved by a DNS TXT record."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser

from apps.common.parsers import FormParser, JSONParser
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from . import serializers as s
from . import services
from .models import Brand, CustomDomain


class BrandViewSet(ResourceViewSet):
    """The brand customers see: `GET` (MEMBER+), `PUT` the whole brand or `PATCH` part of it
    (ADMIN+). Colours are refused below a 4.5:1 contrast (WCAG 2.x AA)."""

    queryset = Brand.objects.all()  # one per tenant, addressed without an id
    serializer_class = s.BrandSerializer
    input_serializers = {"update": s.BrandInputSerializer}
    required_roles = {
        "retrieve": Role.MEMBER,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "apply_nameservers": Role.ADMIN,
    }

    @extend_schema(responses={200: s.BrandSerializer}, summary="The tenant's brand")
    def retrieve(self, request, *args, **kwargs):
        return self.answer(services.brand_of(self.tenant))

    @extend_schema(request=s.BrandInputSerializer, responses={200: s.BrandSerializer}, summary="Replace the brand")
    def update(self, request, *args, **kwargs):
        data = self.validated(partial=False)
        return self.answer(services.brand_update(tenant=self.tenant, data=data, replace=True, actor=request.user))

    @extend_schema(
        request=s.BrandInputSerializer(partial=True), responses={200: s.BrandSerializer}, summary="Change the brand"
    )
    def partial_update(self, request, *args, **kwargs):
        data = self.validated(partial=True)
        return self.answer(services.brand_update(tenant=self.tenant, data=data, actor=request.user))

    @extend_schema(request=None, responses={200: s.NameserversAppliedSerializer},
                   summary="Write the brand's name servers into the tenant's existing zones")  # fmt: skip
    @action(detail=False, methods=["post"], url_path="nameservers/apply")
    def apply_nameservers(self, request, *args, **kwargs):
        applied = services.nameservers_apply(tenant=self.tenant, actor=request.user)
        body = {"nameservers": applied.nameservers,
                "zones": [{"id": zone.pk, "name": zone.name} for zone in applied.zones]}  # fmt: skip
        return self.answer(body, serializer=s.NameserversAppliedSerializer)


class BrandLogoViewSet(ResourceViewSet):
    """The brand's logo: `POST` a file as multipart/form-data (PNG, JPEG, WebP or a static SVG, at
    most 512 KiB and 4096 pixels a side), `DELETE` it (ADMIN+); `GET` answers the brand (MEMBER+)."""

    queryset = Brand.objects.all()
    serializer_class = s.BrandSerializer
    input_serializers = {"create": s.LogoUploadSerializer}
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    required_roles = {"retrieve": Role.MEMBER, "create": Role.ADMIN, "destroy": Role.ADMIN}

    @extend_schema(responses={200: s.BrandSerializer}, summary="The brand and its logo")
    def retrieve(self, request, *args, **kwargs):
        return self.answer(services.brand_of(self.tenant))

    @extend_schema(
        request={"multipart/form-data": s.LogoUploadSerializer},
        responses={201: s.BrandSerializer},
        summary="Upload the logo",
    )
    def create(self, request, *args, **kwargs):
        upload = self.validated()["file"]
        limit = services.validators.max_bytes()
        content = upload.read(limit + 1)  # one byte past the limit is enough to refuse it
        brand = services.logo_upload(tenant=self.tenant, content=content, actor=request.user)
        return self.answer(brand, status.HTTP_201_CREATED)

    @extend_schema(responses={200: s.BrandSerializer}, summary="Remove the logo")
    def destroy(self, request, *args, **kwargs):
        return self.answer(services.logo_delete(tenant=self.tenant, actor=request.user))


class CustomDomainViewSet(ResourceViewSet):
    """Host names under which customers reach the tenant's portal. Add one (ADMIN+), publish the TXT
    record it answers under `verification`, then `POST …/{id}/verify/`. A verified name serves this
    tenant's portal only, with a self-signed certificate until the SSL module issues one."""

    queryset = CustomDomain.objects.select_related("certificate")
    serializer_class = s.CustomDomainSerializer
    input_serializers = {"create": s.CustomDomainCreateSerializer}
    destroy_answers_object = False
    filterset_fields = ["status"]
    ordering_fields = ["hostname", "created_at"]
    ordering = ["hostname"]
    search_fields = ["hostname"]
    summaries = {"destroy": "Remove a portal domain"}
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.ADMIN,
        "destroy": Role.ADMIN,
        "verify": Role.ADMIN,
        "certificate_retry": Role.ADMIN,
    }

    def create_resource(self, data):
        return services.domain_add(tenant=self.tenant, hostname=data["hostname"], actor=self.request.user)

    def destroy_resource(self, obj):
        services.domain_delete(domain=obj, actor=self.request.user)

    @extend_schema(request=None, responses={200: s.CustomDomainSerializer}, summary="Check the TXT record now")
    @action(detail=True, methods=["post"])
    def verify(self, request, pk=None):
        domain = self.get_object()
        return self.answer(services.domain_verify(domain=domain, actor=request.user))

    @extend_schema(request=None, responses={200: s.CustomDomainSerializer},
                   summary="Ask again for the trusted certificate (after a failed issuance)")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="certificate-retry")
    def certificate_retry(self, request, pk=None):
        domain = self.get_object()
        return self.answer(services.domain_certificate_retry(domain=domain, actor=request.user))
