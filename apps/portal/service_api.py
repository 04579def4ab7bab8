"""The portal API's service routes (``/api/v1/portal/…``, portal tokens only): the resources a
customer's services run and what it may do to them, as the pages allow (``service_views``).

Roles as on the pages, checked before any lookup (403 reveals nothing): pods, mailboxes, domains and
databases are ``owner`` and ``technical`` (``billing``: 403); contacts are read by every role and
changed by the ``owner``. Every object is found through ``selectors`` by the token's customer
(another customer's is a 404) and every change goes through ``acts`` to the owning app's service.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.cloudpods.models import CloudPod
from apps.customers.models import Contact
from apps.databases.models import Database, DatabaseGrant, DatabaseUser, ObjectStatus
from apps.domains.models import Domain
from apps.mail.models import Mailbox

from . import acts, selectors
from .api import PortalApiMixin
from .auth import manages_users, require, runs_services
from .serializers import (
    PortalAutoRenewSerializer,
    PortalContactSerializer,
    PortalDatabasePasswordSerializer,
    PortalDatabaseSerializer,
    PortalDatabaseUserSerializer,
    PortalDomainSerializer,
    PortalMailboxPasswordSerializer,
    PortalMailboxSerializer,
    PortalPodSerializer,
)

UUID = "[0-9a-fA-F-]{36}"


class PortalServicesApi(PortalApiMixin):
    """Owner and technical only (billing: 403, before any lookup)."""

    lookup_value_regex = UUID
    filter_backends: list = []

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        require(runs_services, self.portal_user)

    @property
    def customer(self):
        return self.portal_user.customer

    def body(self, serializer_class) -> dict:
        body = serializer_class(data=self.request.data)
        body.is_valid(raise_exception=True)
        return body.validated_data


class PortalPodViewSet(PortalServicesApi, viewsets.ReadOnlyModelViewSet):
    """The customer's CloudPods with their live state. `POST /:id/restart|suspend|resume` asks for the
    act (202; a job does it on the node). A pod suspended with its service (non-payment, or by the
    business) is not resumed from here: 409."""

    queryset = CloudPod.objects.none()
    serializer_class = PortalPodSerializer

    def get_queryset(self):
        return selectors.pods_of(self.customer).order_by("name")

    def _act(self, name: str) -> Response:
        pod = acts.pod_act(self.get_object(), name)
        return Response(PortalPodSerializer(pod).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: PortalPodSerializer}, summary="Restart a pod (portal)")
    @action(detail=True, methods=["post"])
    def restart(self, request, pk=None):
        return self._act("restart")

    @extend_schema(request=None, responses={202: PortalPodSerializer}, summary="Suspend a pod (portal)")
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None):
        return self._act("suspend")

    @extend_schema(request=None, responses={202: PortalPodSerializer}, summary="Resume a pod (portal)")
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act("resume")


class PortalMailboxViewSet(PortalServicesApi, viewsets.ReadOnlyModelViewSet):
    """The customer's mailboxes. `POST /:id/password` sets a new password (at least 10 characters)."""

    queryset = Mailbox.objects.none()
    serializer_class = PortalMailboxSerializer

    def get_queryset(self):
        return (
            Mailbox.objects.filter(mail_domain__customer=self.customer)
            .select_related("mail_domain")
            .order_by("mail_domain__name", "local_part")
        )

    @extend_schema(
        request=PortalMailboxPasswordSerializer, responses={204: None}, summary="Set a mailbox's password (portal)"
    )
    @action(detail=True, methods=["post"])
    def password(self, request, pk=None):
        box = self.get_object()  # a foreign or unknown mailbox is a 404 before its body is read
        acts.mailbox_password(box, self.body(PortalMailboxPasswordSerializer)["password"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class PortalDomainViewSet(PortalServicesApi, viewsets.ReadOnlyModelViewSet):
    """The customer's domains with their expiry. `POST /:id/auto-renew` turns renewal on or off."""

    queryset = Domain.objects.none()
    serializer_class = PortalDomainSerializer

    def get_queryset(self):
        return Domain.objects.filter(customer=self.customer).order_by("name")

    @extend_schema(
        request=PortalAutoRenewSerializer, responses={200: PortalDomainSerializer}, summary="Auto-renew (portal)"
    )
    @action(detail=True, methods=["post"], url_path="auto-renew")
    def auto_renew(self, request, pk=None):
        domain = self.get_object()
        domain = acts.domain_auto_renew(domain, self.body(PortalAutoRenewSerializer)["auto_renew"])
        return Response(PortalDomainSerializer(domain).data)


class PortalDatabaseViewSet(PortalServicesApi, viewsets.ReadOnlyModelViewSet):
    """The customer's databases: engine, server, size (measured nightly), and its own logins on each."""

    queryset = Database.objects.none()
    serializer_class = PortalDatabaseSerializer

    def get_queryset(self):
        return selectors.databases_of(self.customer)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        own = {u.pk: u for u in selectors.database_users_of(self.customer)}
        granted: dict = {}
        rows = DatabaseGrant.objects.filter(database__customer=self.customer, user_id__in=list(own)).exclude(
            status=ObjectStatus.REMOVING
        )
        for database_id, user_id in rows.values_list("database_id", "user_id"):
            granted.setdefault(database_id, set()).add(user_id)
        return {**context, "own_users": own, "granted": granted}


class PortalDatabaseUserViewSet(PortalServicesApi, viewsets.ReadOnlyModelViewSet):
    """The customer's database logins (granted on its databases only). `POST /:id/password` makes a
    new password, answered this once (never stored); the server takes it within a minute."""

    queryset = DatabaseUser.objects.none()
    serializer_class = PortalDatabaseUserSerializer

    def get_queryset(self):
        return selectors.database_users_of(self.customer)

    @extend_schema(
        request=None, responses={200: PortalDatabasePasswordSerializer}, summary="New database password (portal)"
    )
    @action(detail=True, methods=["post"])
    def password(self, request, pk=None):
        user, password = acts.database_password_reset(self.get_object())
        response = Response(PortalDatabasePasswordSerializer({"user": user, "password": password}).data)
        response["Cache-Control"] = "no-store"
        return response


class PortalContactViewSet(
    PortalApiMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """The customer's contacts: every role reads them; the owner adds (`POST`), changes (`PATCH`) and
    removes (`DELETE`) them."""

    queryset = Contact.objects.none()
    serializer_class = PortalContactSerializer
    lookup_value_regex = UUID
    filter_backends: list = []
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    writes = ("create", "partial_update", "destroy")

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action in self.writes:
            require(manages_users, self.portal_user)

    def get_queryset(self):
        return selectors.contacts_of(self.portal_user.customer)

    @extend_schema(request=PortalContactSerializer, responses={201: PortalContactSerializer}, summary="Add a contact")
    def create(self, request):
        body = PortalContactSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        contact = acts.contact_add(
            self.portal_user.customer,
            acts.ContactData(
                name=data["name"],
                email=data["email"],
                phone=data.get("phone", ""),
                role=data.get("role", Contact.Role.OTHER),
            ),
        )
        return Response(PortalContactSerializer(contact).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=PortalContactSerializer(partial=True),
        responses={200: PortalContactSerializer},
        summary="Change a contact",
    )
    def partial_update(self, request, pk=None):
        contact = self.get_object()
        body = PortalContactSerializer(contact, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        return Response(PortalContactSerializer(acts.contact_change(contact, body.validated_data)).data)

    @extend_schema(responses={204: None}, summary="Remove a contact")
    def destroy(self, request, pk=None):
        acts.contact_remove(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
