"""/api/v1/hosting/email: mail domains, their mailboxes and aliases (forwarders).

Roles (docs/api.md, "Who calls it"): reads MEMBER+, changes ADMIN+ (they change the mail node).
Passwords are write-only; only their Dovecot hash is stored, and never answered.
"""

from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from apps.common.exceptions import InvalidInput
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantModelViewSet

from . import services
from .models import Alias, Autoresponder, Mailbox, MailDomain
from .serializers import (
    AliasSerializer,
    AliasUpdateSerializer,
    AutoresponderSerializer,
    AutoresponderUpdateSerializer,
    MailboxSerializer,
    MailboxUpdateSerializer,
    MailDomainSerializer,
    MailDomainUpdateSerializer,
)

ROLES = {
    "list": Role.MEMBER,
    "retrieve": Role.MEMBER,
    "create": Role.ADMIN,
    "update": Role.ADMIN,
    "partial_update": Role.ADMIN,
    "destroy": Role.ADMIN,
}


class MailDomainViewSet(TenantModelViewSet):
    """Mail domains; each change is pushed to the mail node by a ``mail.node.sync`` job."""

    queryset = MailDomain.objects.all()
    serializer_class = MailDomainSerializer
    filterset_fields = ["status", "node", "customer", "name"]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    required_roles = ROLES

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return MailDomainUpdateSerializer
        return MailDomainSerializer

    def perform_create(self, serializer):
        serializer.instance = services.mail_domain_create(tenant=self.tenant, actor=self.request.user,
                                                          **serializer.validated_data)  # fmt: skip

    def update(self, request, *args, **kwargs):
        serializer = MailDomainUpdateSerializer(data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        obj = services.mail_domain_update(mail_domain=self.get_object(), data=serializer.validated_data,
                                          actor=request.user)  # fmt: skip
        return self._answer(obj)

    def _answer(self, obj):
        return Response(MailDomainSerializer(obj).data)

    def perform_destroy(self, instance):
        services.mail_domain_delete(mail_domain=instance, actor=self.request.user)


class _InDomain(TenantModelViewSet):
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    required_roles = ROLES
    ordering_fields = ["local_part", "created_at"]
    ordering = ["local_part"]
    search_fields = ["local_part"]
    update_serializer: type

    def mail_domain(self) -> MailDomain:
        if not hasattr(self, "_mail_domain"):
            self._mail_domain = get_object_or_404(MailDomain.objects.all(), pk=self.kwargs["domain_pk"])
        return self._mail_domain

    def scope_queryset(self, queryset):
        return queryset.filter(mail_domain=self.mail_domain()).select_related("mail_domain")

    def update(self, request, *args, **kwargs):
        obj = self.get_object()
        serializer = self.update_serializer(data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        obj = self.perform_change(obj, serializer.validated_data)
        return Response(self.serializer_class(obj).data)


class MailboxViewSet(_InDomain):
    """Mailboxes of one mail domain (``/hosting/email/domains/{id}/mailboxes``)."""

    queryset = Mailbox.objects.all()
    serializer_class = MailboxSerializer
    update_serializer = MailboxUpdateSerializer
    filterset_fields = ["enabled"]

    def get_serializer_class(self):
        return MailboxUpdateSerializer if self.action in ("update", "partial_update") else MailboxSerializer

    def perform_create(self, serializer):
        serializer.instance = services.mailbox_create(mail_domain=self.mail_domain(), actor=self.request.user,
                                                      **serializer.validated_data)  # fmt: skip

    def perform_change(self, obj, data):
        return services.mailbox_update(mailbox=obj, data=data, actor=self.request.user)

    def perform_destroy(self, instance):
        services.mailbox_delete(mailbox=instance, actor=self.request.user)


class AliasViewSet(_InDomain):
    """Aliases and forwarders of one mail domain (``/hosting/email/domains/{id}/aliases``)."""

    queryset = Alias.objects.all()
    serializer_class = AliasSerializer
    update_serializer = AliasUpdateSerializer

    def get_serializer_class(self):
        return AliasUpdateSerializer if self.action in ("update", "partial_update") else AliasSerializer

    def perform_create(self, serializer):
        serializer.instance = services.alias_create(mail_domain=self.mail_domain(), actor=self.request.user,
                                                    **serializer.validated_data)  # fmt: skip

    def perform_change(self, obj, data):
        return services.alias_update(alias=obj, data=data, actor=self.request.user)

    def perform_destroy(self, instance):
        services.alias_delete(alias=instance, actor=self.request.user)


class AutoresponderViewSet(_InDomain):
    """Vacation replies of one mail domain's mailboxes (``/hosting/email/domains/{id}/autoresponders``),
    one per mailbox; the node renders each as a Sieve script."""

    queryset = Autoresponder.objects.all()
    serializer_class = AutoresponderSerializer
    update_serializer = AutoresponderUpdateSerializer
    filterset_fields = ["enabled", "mailbox"]
    ordering_fields = ["created_at"]
    ordering = ["created_at"]
    search_fields = ["mailbox__local_part", "subject"]

    def scope_queryset(self, queryset):
        return queryset.filter(mailbox__mail_domain=self.mail_domain()).select_related("mailbox__mail_domain")

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return AutoresponderUpdateSerializer
        return AutoresponderSerializer

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        mailbox = data.pop("mailbox")
        if mailbox.mail_domain_id != self.mail_domain().pk:
            raise InvalidInput("This mailbox is not in this mail domain.", field="mailbox")
        serializer.instance = services.autoresponder_create(mailbox=mailbox, actor=self.request.user, **data)

    def perform_change(self, obj, data):
        return services.autoresponder_update(autoresponder=obj, data=data, actor=self.request.user)

    def perform_destroy(self, instance):
        services.autoresponder_delete(autoresponder=instance, actor=self.request.user)
