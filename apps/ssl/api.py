from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action

from apps.common.throttling import DynamicScopedRateThrottle
from apps.security.mfa import require_reauth
from apps.security.serializers import ReauthSerializer
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet
from apps.websites.api import REVOKE_PARAMETER, revoke_flag

from . import services
from .models import Certificate, CertificateSource, CertificateStatus, Challenge, SslSettings
from .serializers import (
    CertificateDetailSerializer,
    CertificateDownloadSerializer,
    CertificateIssueSerializer,
    CertificateKeySerializer,
    CertificateMailSerializer,
    CertificateSerializer,
    CertificateUpdateSerializer,
    CertificateUploadSerializer,
    SslSettingsInputSerializer,
    SslSettingsSerializer,
)


class CertificateFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=CertificateStatus.choices)
    source = filters.ChoiceFilter(choices=CertificateSource.choices)
    challenge = filters.ChoiceFilter(choices=Challenge.choices)
    expires_before = filters.IsoDateTimeFilter(field_name="not_after", lookup_expr="lte")
    expires_after = filters.IsoDateTimeFilter(field_name="not_after", lookup_expr="gte")

    class Meta:
        model = Certificate
        fields = ["status", "source", "challenge", "website"]


@extend_schema_view(
    destroy=extend_schema(
        summary="Delete the certificate (a job takes it off the website)", parameters=[REVOKE_PARAMETER]
    )
)
class CertificateViewSet(ResourceViewSet):
    """SSL certificates: MEMBER+ read (certificate and chain, never the key); ADMIN+ issue, upload,
    renew, revoke, delete, and read the key after re-authenticating.

    Issuance answers at once (`pending`); a job then runs the ACME order, validates through the
    website's nginx (HTTP-01) or a TXT record in your DNS zone (DNS-01) and installs the certificate
    on the website after the web server checked its configuration.
    """

    queryset = Certificate.objects.select_related("website")
    serializer_class = CertificateSerializer
    detail_serializer_class = CertificateDetailSerializer
    input_serializers = {
        "create": CertificateIssueSerializer,
        "update": CertificateUpdateSerializer,
        "upload": CertificateUploadSerializer,
        "key": ReauthSerializer,
        "install_mail": CertificateMailSerializer,
    }
    output_serializers = {"download": CertificateDownloadSerializer, "key": CertificateKeySerializer}
    update_methods = {"patch": True}  # fields left out keep their value
    filterset_class = CertificateFilter
    search_fields = ["names", "serial", "issuer"]
    ordering_fields = ["created_at", "not_after", "status"]
    ordering = ["-created_at"]
    # The key is answered once to who asked: never kept for an Idempotency-Key replay.
    idempotency_secret_fields = ("private_key",)
    throttle_scope: str | None = None  # the key's re-authentication is throttled like a login
    summaries = {
        "create": "Issue a certificate from the ACME CA",
        "partial_update": "Turn HSTS or revoke-on-delete on or off",
    }
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "download": Role.MEMBER,
        "create": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
        "upload": Role.ADMIN,
        "renew": Role.ADMIN,
        "revoke": Role.ADMIN,
        "key": Role.ADMIN,
        "install_mail": Role.ADMIN,
    }

    def create_resource(self, data):
        return services.certificate_issue(tenant=self.tenant, actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return services.certificate_update(certificate=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        return services.certificate_delete(certificate=obj, actor=self.request.user, revoke=revoke_flag(self.request))

    @extend_schema(request=CertificateUploadSerializer, responses={201: CertificateSerializer},
                   summary="Upload your own certificate, chain and key")  # fmt: skip
    @action(detail=False, methods=["post"])
    def upload(self, request):
        cert = services.certificate_upload(tenant=self.tenant, actor=request.user, **self.validated())
        return self.answer(cert, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={202: CertificateSerializer}, summary="Renew now")
    @action(detail=True, methods=["post"])
    def renew(self, request, pk=None):
        cert = services.certificate_renew(certificate=self.get_object(), actor=request.user)
        return self.answer(cert, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: CertificateSerializer}, summary="Revoke (the site stops serving it)")
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        cert = services.certificate_revoke(certificate=self.get_object(), actor=request.user)
        return self.answer(cert, status.HTTP_202_ACCEPTED)

    @extend_schema(request=CertificateMailSerializer, responses={202: CertificateSerializer},
                   summary="Serve it on a mail node's Postfix and Dovecot (null: take it off)")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="install-mail")
    def install_mail(self, request, pk=None):
        cert = services.certificate_install_mail(certificate=self.get_object(), actor=request.user, **self.validated())
        return self.answer(cert, status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: CertificateDownloadSerializer}, summary="The certificate and its chain (PEM)")
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        cert = self.get_object()
        if not cert.certificate_pem:
            return self.answer({"certificate": "", "chain": "", "fullchain": ""})
        return self.answer({"certificate": cert.certificate_pem, "chain": cert.chain_pem,
                            "fullchain": services.fullchain(cert)})  # fmt: skip

    @extend_schema(request=ReauthSerializer, responses={200: CertificateKeySerializer},
                   summary="The private key (PEM), after re-authenticating")  # fmt: skip
    @action(detail=True, methods=["post"], throttle_classes=[DynamicScopedRateThrottle], throttle_scope="login")
    def key(self, request, pk=None):
        cert = self.get_object()
        data = self.validated()
        user = request.user
        require_reauth(user, code=data.get("code"), password=data.get("password"))
        return self.answer({"private_key": services.key_pem(certificate=cert, actor=user)})


class SslSettingsViewSet(ResourceViewSet):
    """The tenant's SSL settings: `GET /enterprise/ssl/settings` (MEMBER+), `PUT|PATCH` (ADMIN+;
    fields left out keep their value), through the service the admin uses (audited). Today one
    setting: whether deleting a certificate, or its website, revokes it at the CA when neither the
    delete nor the certificate says."""

    serializer_class = SslSettingsSerializer
    queryset = SslSettings.objects.all()  # one row per tenant, addressed without an id
    input_serializers = {"update": SslSettingsInputSerializer}
    required_roles = {"retrieve": Role.MEMBER, "update": Role.ADMIN, "partial_update": Role.ADMIN}

    @extend_schema(responses={200: SslSettingsSerializer}, summary="The tenant's SSL settings")
    def retrieve(self, request, *args, **kwargs):
        return self.answer(services.settings_for(self.tenant))

    @extend_schema(request=SslSettingsInputSerializer, responses={200: SslSettingsSerializer},
                   summary="Change SSL settings (fields left out keep their value)")  # fmt: skip
    def update(self, request, *args, **kwargs):
        data = self.validated(partial=True)
        return self.answer(services.settings_update(tenant=self.tenant, data=data, actor=request.user))

    @extend_schema(request=SslSettingsInputSerializer, responses={200: SslSettingsSerializer},
                   summary="Change SSL settings (fields left out keep their value)")  # fmt: skip
    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, **kwargs)
