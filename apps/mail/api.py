"""/api/v1/hosting/email: mail domains, their mailboxes and aliases (forwarders).

Roles: reads MEMBER+, changes ADMIN+ (they change the mail node).
Passwords are write-only; only their Dovecot hash is stored, and never answered.
"""

from rest_framework.generics import get_object_or_404

from apps.common.exceptions import InvalidInput
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

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


class MailDomainViewSet(ResourceViewSet):
    """Mail domains; a job then applies each change on the mail node."""

    queryset = MailDomain.objects.all()
    serializer_class = MailDomainSerializer
    input_serializers = {"create": MailDomainSerializer, "update": MailDomainUpdateSerializer}
    destroy_answers_object = False
    filterset_fields = ["status", "node", "customer", "name"]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    required_roles = ROLES

    def create_resource(self, data):
        return services.mail_domain_create(tenant=self.tenant, actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return services.mail_domain_update(mail_domain=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        services.mail_domain_delete(mail_domain=obj, actor=self.request.user)


class _InDomain(ResourceViewSet):
    """What lives in one mail domain: the mail domain in the URL scopes every route."""

    required_roles = ROLES
    destroy_answers_object = False
    ordering_fields = ["local_part", "created_at"]
    ordering = ["local_part"]
    search_fields = ["local_part"]

    def mail_domain(self) -> MailDomain:
        if not hasattr(self, "_mail_domain"):
            self._mail_domain = get_object_or_404(MailDomain.objects.all(), pk=self.kwargs["domain_pk"])
        return self._mail_domain

    def scope_queryset(self, queryset):
        return queryset.filter(mail_domain=self.mail_domain()).select_related("mail_domain")


class MailboxViewSet(_InDomain):
    """Mailboxes of one mail domain. Passwords are write-only."""

    queryset = Mailbox.objects.all()
    serializer_class = MailboxSerializer
    input_serializers = {"create": MailboxSerializer, "update": MailboxUpdateSerializer}
    filterset_fields = ["enabled"]

    def create_resource(self, data):
        return services.mailbox_create(mail_domain=self.mail_domain(), actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return services.mailbox_update(mailbox=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        services.mailbox_delete(mailbox=obj, actor=self.request.user)


class AliasViewSet(_InDomain):
    """Aliases and forwarders of one mail domain."""

    queryset = Alias.objects.all()
    serializer_class = AliasSerializer
    input_serializers = {"create": AliasSerializer, "update": AliasUpdateSerializer}

    def create_resource(self, data):
        return services.alias_create(mail_domain=self.mail_domain(), actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return services.alias_update(alias=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        services.alias_delete(alias=obj, actor=self.request.user)


class AutoresponderViewSet(_InDomain):
    """Vacation replies of one mail domain's mailboxes, one per mailbox; the mail node applies each as
    a Sieve script."""

    queryset = Autoresponder.objects.all()
    serializer_class = AutoresponderSerializer
    input_serializers = {"create": AutoresponderSerializer, "update": AutoresponderUpdateSerializer}
    filterset_fields = ["enabled", "mailbox"]
    ordering_fields = ["created_at"]
    ordering = ["created_at"]
    search_fields = ["mailbox__local_part", "subject"]

    def scope_queryset(self, queryset):
        return queryset.filter(mailbox__mail_domain=self.mail_domain()).select_related("mailbox__mail_domain")

    def create_resource(self, data):
        data = dict(data)
        mailbox = data.pop("mailbox")
        if mailbox.mail_domain_id != self.mail_domain().pk:
            raise InvalidInput("This mailbox is not in this mail domain.", field="mailbox")
        return services.autoresponder_create(mailbox=mailbox, actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return services.autoresponder_update(autoresponder=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        services.autoresponder_delete(autoresponder=obj, actor=self.request.user)
