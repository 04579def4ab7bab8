"""Two APIs: the staff's (a customer's portal users, ``/api/v1/customers/{id}/portal-users``) and the
customers' own portal API (``/api/v1/portal/…``, portal tokens only).

The portal API is another realm: its only authentication class reads ``mpc_`` portal tokens (a staff
session key or ``mp_`` token is refused with 403), it runs in the token's tenant, and every object is
looked up through ``selectors`` by the token's customer (another customer's object is a 404).
"""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

from django.db import transaction
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit import services as audit
from apps.billing.models import Invoice, SavedPaymentMethod, Subscription
from apps.billing.services import cards, stripe_gateway, subscriptions
from apps.catalog.models import Visibility
from apps.common.api import ApiViewSetMixin
from apps.common.throttling import DynamicScopedRateThrottle
from apps.customers.models import Customer
from apps.orders import services as order_services
from apps.orders.models import Order
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from apps.tenancy.scoping import tenant_scope
from apps.tenancy.viewsets import ResourceViewSet

from . import selectors, services
from .auth import IsPortalUser, PortalTokenAuthentication, host_tenant, require, sees_money
from .models import PortalSession, PortalUser
from .payment_views import accepted_methods
from .serializers import (
    PayLinkSerializer,
    PortalCancellationSerializer,
    PortalCancelSerializer,
    PortalCardSerializer,
    PortalCardSetupSerializer,
    PortalInvoiceSerializer,
    PortalLoginSerializer,
    PortalMeSerializer,
    PortalOrderCreateSerializer,
    PortalOrderSerializer,
    PortalPaymentMethodsSerializer,
    PortalPlanChangeQuoteSerializer,
    PortalPlanChangeSerializer,
    PortalServiceSerializer,
    PortalSessionSerializer,
    PortalTokenSerializer,
    PortalUserInviteSerializer,
    PortalUserSerializer,
    PortalUserUpdateSerializer,
)
from .services import absolute

# --- staff: a customer's portal users -----------------------------------------------------------


class PortalUserViewSet(ResourceViewSet):
    """The portal users of one customer (``/customers/{customer_id}/portal-users``): ADMIN+.

    `POST /` invites an address (an email with a link to set the password, valid 7 days);
    `POST /:id/resend` sends the invitation again; `PATCH` changes the role, name or active flag
    (a customer keeps one active owner); `DELETE` removes the login."""

    queryset = PortalUser.objects.all()
    serializer_class = PortalUserSerializer
    input_serializers = {"create": PortalUserInviteSerializer, "update": PortalUserUpdateSerializer}
    update_methods = {"patch": True}
    destroy_answers_object = False
    ordering_fields = ["email", "created_at"]
    ordering = ["email"]
    summaries = {"create": "Invite a portal user", "destroy": "Remove a portal user"}
    required_roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
        "resend": Role.ADMIN,
    }

    def customer(self) -> Customer:
        if not hasattr(self, "_customer"):
            self._customer = get_object_or_404(Customer.objects.all(), pk=self.kwargs["customer_pk"])
        return self._customer

    def scope_queryset(self, queryset):
        return queryset.filter(customer=self.customer())

    def create_resource(self, data):
        return services.portal_user_invite(
            customer=self.customer(), email=data["email"], role=data["role"], name=data.get("name", "")
        )

    def update_resource(self, obj, data):
        return services.portal_user_update(user=obj, data=data)

    def destroy_resource(self, obj):
        services.portal_user_remove(user=obj)

    @extend_schema(request=None, responses={200: PortalUserSerializer}, summary="Send the invitation again")
    @action(detail=True, methods=["post"])
    def resend(self, request, pk=None, customer_pk=None):
        return self.answer(services.portal_user_resend(user=self.get_object()))


# --- customers: the portal API ----------------------------------------------------------------------


class PortalApiMixin(ApiViewSetMixin):
    """Portal tokens only; the token's tenant in scope for the whole request (rendering included);
    ``Idempotency-Key`` on POST as on the staff API, the portal user's keys apart from anyone else's."""

    authentication_classes = [PortalTokenAuthentication]
    permission_classes = [IsPortalUser]

    def tenant_for_idempotency(self, request):
        return request.user.customer.tenant if isinstance(request.user, PortalUser) else None

    def initial(self, request, *args, **kwargs):
        self.perform_authentication(request)
        if isinstance(request.user, PortalUser):
            self._exit_stack.enter_context(tenant_scope(request.user.customer.tenant))
        super().initial(request, *args, **kwargs)

    @property
    def portal_user(self) -> PortalUser:
        return self.request.user


class PortalLoginView(APIView):
    """Log in to the portal API: a portal token (``mpc_…``, 30 days) for a customer's portal user."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [DynamicScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=PortalLoginSerializer, responses={200: PortalTokenSerializer}, summary="Log in (portal)")
    def post(self, request):
        body = PortalLoginSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        tenant = Tenant.objects.filter(slug=data["tenant"], status=Tenant.Status.ACTIVE).first()
        on_host = host_tenant(request)
        if on_host is not None and tenant != on_host:
            tenant = None  # a custom domain logs in to its own tenant's portal only
        if tenant is None:
            raise exceptions.ValidationError({"tenant": ["Unknown business."]})
        session, raw = services.login(
            tenant=tenant,
            email=data["email"],
            password=data["password"],
            code=data.get("code", ""),
            kind=PortalSession.Kind.API,
        )
        return Response({"token": raw, "expires_at": session.expires_at})


class PortalLogoutView(PortalApiMixin, APIView):
    """Log out of the portal API: revokes the token that sent this request."""

    @extend_schema(request=None, responses={204: None}, summary="Log out (portal)")
    def post(self, request):
        services.session_revoke(session=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PortalMeView(PortalApiMixin, APIView):
    """The portal user of the token, with their customer and role."""

    @extend_schema(responses={200: PortalMeSerializer}, summary="Show me (portal)")
    def get(self, request):
        return Response(PortalMeSerializer(self.portal_user).data)


class PortalServiceViewSet(PortalApiMixin, viewsets.ReadOnlyModelViewSet):
    """The customer's services (subscriptions): every role."""

    queryset = Subscription.objects.none()
    serializer_class = PortalServiceSerializer
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    filter_backends: list = []

    def get_queryset(self):
        return selectors.subscriptions_of(self.portal_user.customer)

    def _own_and_body(self, serializer_class) -> tuple[Subscription, dict]:
        """Owner and billing (403 before any lookup: it reveals nothing), then the customer's own
        service (another's is a 404 whatever the body), then the body (400)."""
        require(sees_money, self.portal_user)
        sub = self.get_object()
        body = serializer_class(data=self.request.data)
        body.is_valid(raise_exception=True)
        return sub, body.validated_data

    @extend_schema(
        request=PortalCancelSerializer,
        responses={200: PortalCancellationSerializer},
        summary="Cancel a service, or preview it (portal)",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """At the end of the paid period (default) or now; now credits the unused paid days to the
        balance. ``preview: true`` answers the same figures and changes nothing. Owner and billing."""
        sub, data = self._own_and_body(PortalCancelSerializer)
        options = {"at_period_end": data["at_period_end"], "credit_unused": data["credit_unused"]}
        if data["preview"]:
            quote, applied = subscriptions.subscription_cancel_preview(sub=sub, **options), False
        else:
            sub, quote = subscriptions.subscription_cancel_quoted(sub=sub, **options)
            applied = True
        sub = selectors.subscription_of(self.portal_user.customer, sub.pk)
        body = SimpleNamespace(**vars(quote), applied=applied, service=sub)
        return Response(PortalCancellationSerializer(body).data)

    @extend_schema(
        request=PortalPlanChangeSerializer,
        responses={200: PortalPlanChangeQuoteSerializer},
        summary="Change a service's plan, or preview it (portal)",
    )
    @action(detail=True, methods=["post"])
    def change(self, request, pk=None):
        """Another plan of the same type (or another quantity) now, prorated by day: a higher price
        is charged on the next invoice, a lower one credited at once. ``preview: true`` answers the
        same figures and changes nothing. Owner and billing."""
        sub, data = self._own_and_body(PortalPlanChangeSerializer)
        product = selectors.plan_choice(sub, data["product"])
        if product is None:
            raise exceptions.ValidationError({"product": ["Unknown plan for this service."]})
        options = {"product": product, "quantity": data.get("quantity")}
        quote = subscriptions.subscription_change_preview(sub=sub, **options)
        if not data["preview"]:
            sub = subscriptions.subscription_change(sub=sub, on=quote.on, **options)
        net = quote.net
        body = SimpleNamespace(
            **vars(quote), applied=not data["preview"], currency=sub.currency,
            charge=max(net, Decimal(0)), credit=max(-net, Decimal(0)),
            service=selectors.subscription_of(self.portal_user.customer, sub.pk),
        )  # fmt: skip
        return Response(PortalPlanChangeQuoteSerializer(body).data)


class PortalInvoiceViewSet(PortalApiMixin, viewsets.ReadOnlyModelViewSet):
    """The customer's invoices (owner and billing; technical: 403). `POST /:id/pay` answers a payment link."""

    queryset = Invoice.objects.none()
    serializer_class = PortalInvoiceSerializer
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    filter_backends: list = []

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        require(sees_money, self.portal_user)

    def get_queryset(self):
        return selectors.invoices_of(self.portal_user.customer).prefetch_related("lines")

    @extend_schema(request=None, responses={201: PayLinkSerializer}, summary="A payment link (Stripe Checkout)")
    @action(detail=True, methods=["post"])
    def pay(self, request, pk=None):
        invoice = self.get_object()
        link = stripe_gateway.checkout_link(invoice=invoice)
        with transaction.atomic():
            audit.record(action="portal.invoice_checkout", obj=invoice, changes={"checkout_session": link["id"]})
        return Response(PayLinkSerializer(link).data, status=status.HTTP_201_CREATED)


class PortalOrderViewSet(PortalApiMixin, viewsets.GenericViewSet):
    """The customer's orders (owner and billing). `POST /` prices, accepts and invoices them at once."""

    queryset = Order.objects.none()
    serializer_class = PortalOrderSerializer
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    filter_backends: list = []

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        require(sees_money, self.portal_user)

    def get_queryset(self):
        return selectors.orders_of(self.portal_user.customer)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(PortalOrderSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(PortalOrderSerializer(self.get_object()).data)

    @extend_schema(
        request=PortalOrderCreateSerializer,
        responses={201: PortalOrderSerializer},
        summary="Order (priced, invoiced; pay the invoice to start the services)",
    )
    def create(self, request):
        body = PortalOrderCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        items = body.validated_data["items"]
        for position, item in enumerate(items):
            if item["product"].visibility != Visibility.PUBLIC:
                raise exceptions.ValidationError({"items": [f"Item {position + 1}: unknown product."]})
        customer = self.portal_user.customer
        with transaction.atomic():
            order = order_services.order_create(tenant=customer.tenant, customer=customer, items=items)
            order = order_services.order_accept(order=order)
        return Response(
            PortalOrderSerializer(selectors.order_of(customer, order.pk)).data, status=status.HTTP_201_CREATED
        )


class PortalPaymentMethodViewSet(PortalApiMixin, viewsets.GenericViewSet):
    """The customer's saved cards (owner and billing; technical: 403). `POST setup` answers Stripe's
    hosted page (Checkout in setup mode) where the customer enters a card: it is listed once Stripe
    confirms it. `POST /:id/default` makes a card the one renewals are charged on; `DELETE /:id`
    removes it (detached at Stripe)."""

    queryset = SavedPaymentMethod.objects.none()
    serializer_class = PortalCardSerializer
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    filter_backends: list = []
    pagination_class = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        require(sees_money, self.portal_user)

    def get_queryset(self):
        return cards.cards_of(self.portal_user.customer)

    @extend_schema(responses={200: PortalPaymentMethodsSerializer}, summary="Saved cards and how to pay (portal)")
    def list(self, request):
        customer = self.portal_user.customer
        body = {
            "cards_offered": cards.cards_account(customer.tenant_id) is not None,
            "accepted": accepted_methods(customer.tenant_id),
            "results": list(self.get_queryset()),
        }
        return Response(PortalPaymentMethodsSerializer(body).data)

    @extend_schema(
        request=PortalCardSetupSerializer,
        responses={201: PayLinkSerializer},
        summary="Add a card: Stripe's page to enter it (portal)",
    )
    @action(detail=False, methods=["post"])
    def setup(self, request):
        body = PortalCardSetupSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        customer = self.portal_user.customer
        page = reverse("portal:payment-methods", kwargs={"tenant_slug": customer.tenant.slug})
        link = cards.setup_start(
            customer=customer,
            success_url=body.validated_data.get("success_url") or absolute(f"{page}?saved=1"),
            cancel_url=body.validated_data.get("cancel_url") or absolute(f"{page}?cancelled=1"),
            actor=self.portal_user,
        )
        return Response(PayLinkSerializer(link).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: PortalCardSerializer}, summary="Make a card the default (portal)")
    @action(detail=True, methods=["post"], url_path="default")
    def make_default(self, request, pk=None):
        card = cards.card_set_default(card=self.get_object(), actor=self.portal_user)
        return Response(PortalCardSerializer(card).data)

    @extend_schema(responses={204: None}, summary="Remove a saved card (portal)")
    def destroy(self, request, pk=None):
        cards.card_remove(card=self.get_object(), actor=self.portal_user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PortalSessionViewSet(PortalApiMixin, viewsets.GenericViewSet):
    """The portal user's live sessions and tokens; `DELETE /:id` ends one."""

    queryset = PortalSession.objects.none()
    serializer_class = PortalSessionSerializer
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    filter_backends: list = []

    def get_queryset(self):
        return selectors.sessions_of(self.portal_user)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(PortalSessionSerializer(page, many=True).data)

    @extend_schema(responses={204: None}, summary="End a session or token (portal)")
    def destroy(self, request, pk=None):
        services.session_revoke(session=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
