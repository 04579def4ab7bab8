import re

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.decorators import action
from rest_framework.exceptions import Throttled
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.exceptions import InvalidInput
from apps.common.throttling import DynamicScopedRateThrottle
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from .filters import CreditNoteFilter, InvoiceFilter, PaymentFilter, SavedPaymentMethodFilter, SubscriptionFilter
from .models import (
    BillingSettings,
    CreditNote,
    Invoice,
    Payment,
    PaymentMethod,
    SavedPaymentMethod,
    StripeConnection,
    Subscription,
    WebhookEvent,
    WebhookSecret,
)
from .serializers import (
    BillingSettingsInputSerializer,
    BillingSettingsSerializer,
    CancelSerializer,
    CheckoutLinkSerializer,
    CreditNoteCreateSerializer,
    CreditNoteSerializer,
    GenericEventSerializer,
    InvoiceCreateSerializer,
    InvoiceSerializer,
    InvoiceUpdateSerializer,
    PaymentSerializer,
    PaySerializer,
    RefundSerializer,
    SavedPaymentMethodSerializer,
    StripeConnectionSerializer,
    StripeConnectSerializer,
    StripeOnboardingSerializer,
    SubscriptionCreateSerializer,
    SubscriptionSerializer,
    SubscriptionUpdateSerializer,
    UsageRecordSerializer,
    UsageSerializer,
    WebhookAnswer,
    WebhookSecretCreatedSerializer,
    WebhookSecretRotateSerializer,
    WebhookSecretsSerializer,
)
from .services import (
    cards,
    connect,
    credit_notes,
    documents,
    invoices,
    payments,
    subscriptions,
    tenant_settings,
    webhook_secrets,
    webhooks,
)


class InvoiceViewSet(ResourceViewSet):
    """Invoices: read BILLING+, every change ADMIN+.

    Drafts are edited with PATCH and deleted with DELETE; `issue` numbers and freezes them.
    Illegal transitions answer 409.
    """

    queryset = Invoice.objects.prefetch_related("lines")
    serializer_class = InvoiceSerializer
    input_serializers = {
        "create": InvoiceCreateSerializer,
        "update": InvoiceUpdateSerializer,
        "pay": PaySerializer,
        "credit": CreditNoteCreateSerializer,
    }
    # A draft is edited by PATCH alone, and each line sent is checked whole.
    update_methods = {"patch": False}
    destroy_answers_object = False
    summaries = {"create": "Create a draft", "partial_update": "Edit a draft"}
    filterset_class = InvoiceFilter
    search_fields = ["number", "customer__name", "customer__email", "notes"]
    ordering_fields = ["created_at", "issue_date", "due_date", "total", "number"]
    ordering = ["-created_at"]
    required_roles = {
        "list": Role.BILLING,
        "retrieve": Role.BILLING,
        "create": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
        "issue": Role.ADMIN,
        "pay": Role.ADMIN,
        "void": Role.ADMIN,
        "mark_uncollectible": Role.ADMIN,
        "credit": Role.ADMIN,
        "pdf": Role.BILLING,
    }

    def create_resource(self, data):
        invoice = invoices.invoice_create(
            tenant=self.tenant, customer=data["customer"], lines=data["lines"], currency=data.get("currency"),
            due_date=data.get("due_date"), notes=data.get("notes", ""), by_hand=True,
        )  # fmt: skip
        return self.current(invoice)

    def update_resource(self, obj, data):
        return self.current(invoices.invoice_update_draft(invoice=obj, data=data))

    def destroy_resource(self, obj):
        invoices.invoice_delete_draft(invoice=obj)

    @extend_schema(request=None, responses={200: InvoiceSerializer}, summary="Issue a draft: number it, open it")
    @action(detail=True, methods=["post"])
    def issue(self, request, pk=None):
        return self.answer(self.current(invoices.invoice_issue(invoice=self.get_object())))

    @extend_schema(request=None, responses={200: InvoiceSerializer}, summary="Void an open invoice")
    @action(detail=True, methods=["post"])
    def void(self, request, pk=None):
        return self.answer(self.current(invoices.invoice_void(invoice=self.get_object())))

    @extend_schema(request=None, responses={200: InvoiceSerializer}, summary="Mark an open invoice uncollectible")
    @action(detail=True, methods=["post"], url_path="mark-uncollectible", url_name="mark-uncollectible")
    def mark_uncollectible(self, request, pk=None):
        return self.answer(self.current(invoices.invoice_mark_uncollectible(invoice=self.get_object())))

    @extend_schema(
        request=PaySerializer,
        responses={
            200: InvoiceSerializer,
            201: CheckoutLinkSerializer,
            409: OpenApiResponse(description="Not payable"),
        },
        summary="Record a manual payment, or get a Stripe Checkout link (method=stripe)",
    )
    @action(detail=True, methods=["post"])
    def pay(self, request, pk=None):
        invoice = self.get_object()
        data = self.validated()
        if data["method"] == PaymentMethod.STRIPE:
            link = payments.checkout_start(invoice=invoice)
            return self.answer(link, status.HTTP_201_CREATED, serializer=CheckoutLinkSerializer)
        payments.payment_record(
            invoice=invoice, amount=data["amount"], method=data["method"], reference=data.get("reference", ""),
            actor=request.user,
        )  # fmt: skip
        return self.answer(self.current(invoice))

    @extend_schema(request=CreditNoteCreateSerializer, responses={201: CreditNoteSerializer},
                   summary="Issue a credit note against this invoice (all that is left, or per line)")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="credit-notes", url_name="credit-notes")
    def credit(self, request, pk=None):
        invoice = self.get_object()
        data = self.validated()
        note = credit_notes.credit_note_create(invoice=invoice, lines=data.get("lines"), reason=data.get("reason", ""))
        return self.answer(with_lines(note), status.HTTP_201_CREATED, serializer=CreditNoteSerializer)

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY}, summary="The invoice as a PDF")
    @action(detail=True, methods=["get"])
    def pdf(self, request, pk=None):
        invoice = self.get_object()
        return pdf_response(documents.invoice_pdf(invoice), invoice.number or f"draft-{invoice.pk}")


def with_lines(note: CreditNote) -> CreditNote:
    """A credit note as its answer reads it (its lines in one query)."""
    return CreditNote.objects.prefetch_related("lines").get(pk=note.pk)


def pdf_response(data: bytes, name: str) -> HttpResponse:
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{name}.pdf"'
    return response


class PaymentViewSet(ResourceViewSet):
    """Payments received (read BILLING+); `POST /:id/refund` ADMIN+."""

    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer
    input_serializers = {"refund": RefundSerializer}
    filterset_class = PaymentFilter
    ordering_fields = ["received_at", "amount"]
    ordering = ["-received_at"]
    search_fields = ["reference"]
    required_roles = {"list": Role.BILLING, "retrieve": Role.BILLING, "refund": Role.ADMIN}

    @extend_schema(request=RefundSerializer, responses={201: CreditNoteSerializer},
                   summary="Refund part or all of a payment (with its credit note)")  # fmt: skip
    @action(detail=True, methods=["post"])
    def refund(self, request, pk=None):
        payment = self.get_object()  # another tenant's payment is a 404 before any body check
        data = self.validated()
        note = payments.payment_refund(payment=payment, amount=data["amount"], reason=data.get("reason", ""))
        return self.answer(with_lines(note), status.HTTP_201_CREATED, serializer=CreditNoteSerializer)


class SavedPaymentMethodViewSet(ResourceViewSet):
    """Customers' saved cards (`?customer=<id>`; MEMBER+ read). `POST /:id/default` makes one the card
    renewals are charged on, `DELETE /:id` removes it (detached at Stripe first): BILLING+. Cards are
    added by the customer only, on Stripe's page (the portal), never typed in here."""

    queryset = SavedPaymentMethod.objects.select_related("customer")
    serializer_class = SavedPaymentMethodSerializer
    filterset_class = SavedPaymentMethodFilter
    ordering_fields = ["created_at"]
    ordering = ["-is_default", "-created_at"]
    search_fields = ["last4", "brand"]
    destroy_answers_object = False
    summaries = {"destroy": "Remove a saved card (detached at Stripe)"}
    required_roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER, "destroy": Role.BILLING,
                      "make_default": Role.BILLING}  # fmt: skip

    def destroy_resource(self, obj):
        cards.card_remove(card=obj, actor=self.request.user)

    @extend_schema(request=None, responses={200: SavedPaymentMethodSerializer},
                   summary="Make a saved card the one renewals are charged on")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="default")
    def make_default(self, request, pk=None):
        return self.answer(cards.card_set_default(card=self.get_object(), actor=request.user))


class CreditNoteViewSet(ResourceViewSet):
    """Credit notes (read BILLING+); they are made from an invoice or a refund."""

    queryset = CreditNote.objects.prefetch_related("lines")
    serializer_class = CreditNoteSerializer
    filterset_class = CreditNoteFilter
    ordering_fields = ["issued_at", "total"]
    ordering = ["-issued_at"]
    search_fields = ["number", "reason"]
    required_roles = {"list": Role.BILLING, "retrieve": Role.BILLING, "pdf": Role.BILLING}

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY}, summary="The credit note as a PDF")
    @action(detail=True, methods=["get"])
    def pdf(self, request, pk=None):
        note = self.get_object()
        return pdf_response(documents.credit_note_pdf(note), note.number)


class _WebhookView(APIView):
    """A provider's deliveries. Only a refused delivery (a bad signature or body, a wrong method: any 4xx)
    counts against the ``public`` rate of its address and is answered 429 beyond it, as before. A verified
    one is not counted: it proves it comes from the provider, whose bursts (and retries) must not be
    refused, and the answer saves the throttle's round trip to the cache."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [DynamicScopedRateThrottle]
    throttle_scope = "public"

    def check_throttles(self, request):
        """Nothing is counted before the delivery is verified (``finalize_response`` counts the refused)."""

    def finalize_response(self, request, response, *args, **kwargs):
        if 400 <= response.status_code < 500 and response.status_code != status.HTTP_429_TOO_MANY_REQUESTS:
            try:
                super().check_throttles(request)
            except Throttled as exc:
                response = self.handle_exception(exc)
        return super().finalize_response(request, response, *args, **kwargs)

    def answer(self, event: WebhookEvent) -> Response:
        return Response({"received": True, "status": event.status})


class StripeWebhookView(_WebhookView):
    """Stripe events, verified like `stripe.Webhook.construct_event` (5-minute tolerance), from the
    platform's account or (Connect) a tenant's connected account: an event naming an `account` is
    applied within the tenant that connected it, or stored and answered 200 when none has."""

    @extend_schema(request=None, responses={200: WebhookAnswer, 400: OpenApiResponse(description="Bad signature")},
                   auth=[], summary="Stripe webhook")  # fmt: skip
    def post(self, request):
        raw = request.body
        try:
            payload = webhooks.verify_stripe(raw, request.headers.get("Stripe-Signature"))
        except webhooks.BadSignature as exc:
            return Response({"detail": f"Invalid signature: {exc}"}, status=status.HTTP_400_BAD_REQUEST)
        if not webhooks.is_stripe_event(payload):
            return Response({"detail": "Not a Stripe event."}, status=status.HTTP_400_BAD_REQUEST)
        account = payload.get("account") or ""
        if not isinstance(account, str) or len(account) > 255:
            return Response({"detail": "Not a Stripe event."}, status=status.HTTP_400_BAD_REQUEST)
        event = webhooks.receive(
            provider="stripe", event_id=str(payload["id"]), type=str(payload["type"]),
            created=webhooks.stripe_created(payload), payload=payload, raw=raw, account=account,
        )  # fmt: skip
        return self.answer(event)


class _TenantWebhook:
    def for_tenant(self, request, slug: str):
        """Verified with the tenant's secrets only (never the global one); an unknown tenant and a bad
        signature answer alike (400), so the endpoint does not tell which tenants exist."""
        raw = request.body
        tenant = Tenant.objects.filter(slug=slug).first() if SLUG_RE.match(slug) else None
        secrets = webhook_secrets.valid_secrets(tenant) if tenant is not None else []
        try:
            payload = webhooks.verify_generic(raw, request.headers.get("X-Mpanel-Signature"), secrets)
        except webhooks.BadSignature as exc:
            return Response({"detail": f"Invalid signature: {exc}"}, status=status.HTTP_400_BAD_REQUEST)
        event_id, type_ = GenericEventSerializer.envelope(payload)
        event = webhooks.receive(
            provider="generic", event_id=event_id, type=type_,
            created=None, payload=payload, raw=raw, tenant=tenant,
        )  # fmt: skip
        return self.answer(event)


TENANT_HEADER = "X-Mpanel-Tenant"
SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]{1,80}$")


class GenericWebhookView(_TenantWebhook, _WebhookView):
    """Our own signed format: `X-Mpanel-Signature: t=<unix>,v1=<hex>`. With an `X-Mpanel-Tenant:
    <tenant slug>` header it is that tenant's endpoint (as `/billing/webhooks/generic/<slug>`): only
    the tenant's own secrets verify it. Without it, the platform's own events: only the global secret."""

    @extend_schema(request=GenericEventSerializer,
                   parameters=[OpenApiParameter(TENANT_HEADER, str, OpenApiParameter.HEADER, required=False,
                                                description="A tenant's slug: verified with that tenant's secret")],
                   responses={200: WebhookAnswer, 400: OpenApiResponse(description="Bad signature or body")},
                   auth=[], summary="Generic payment webhook")  # fmt: skip
    def post(self, request):
        slug = request.headers.get(TENANT_HEADER)
        if slug is not None:
            return self.for_tenant(request, slug.strip())
        raw = request.body
        try:
            payload = webhooks.verify_generic(raw, request.headers.get("X-Mpanel-Signature"))
        except webhooks.BadSignature as exc:
            return Response({"detail": f"Invalid signature: {exc}"}, status=status.HTTP_400_BAD_REQUEST)
        event_id, type_ = GenericEventSerializer.envelope(payload)
        event = webhooks.receive(
            provider="generic", event_id=event_id, type=type_,
            created=None, payload=payload, raw=raw,
        )  # fmt: skip
        return self.answer(event)


class TenantGenericWebhookView(_TenantWebhook, _WebhookView):
    """A tenant's own generic endpoint: signed with the tenant's secret (two valid while it rotates),
    applied only to that tenant's invoices. An unknown tenant and a bad signature answer alike (400)."""

    @extend_schema(request=GenericEventSerializer,
                   responses={200: WebhookAnswer, 400: OpenApiResponse(description="Bad signature or body")},
                   auth=[], summary="A tenant's generic payment webhook",
                   operation_id="billing_webhooks_generic_tenant_create")  # fmt: skip
    def post(self, request, slug: str):
        return self.for_tenant(request, slug)


class BillingSettingsViewSet(ResourceViewSet):
    """The tenant's billing settings: `GET /billing/settings` (BILLING+), `PUT|PATCH` (ADMIN+; fields
    left out keep their value). A number format that cannot give unique numbers is a 400."""

    serializer_class = BillingSettingsSerializer
    queryset = BillingSettings.objects.all()  # one row per tenant, addressed without an id
    input_serializers = {"update": BillingSettingsInputSerializer}
    required_roles = {"retrieve": Role.BILLING, "update": Role.ADMIN, "partial_update": Role.ADMIN}

    @extend_schema(responses={200: BillingSettingsSerializer}, summary="The tenant's billing settings")
    def retrieve(self, request, *args, **kwargs):
        return self.answer(tenant_settings.settings_of(self.tenant))

    @extend_schema(request=BillingSettingsInputSerializer, responses={200: BillingSettingsSerializer},
                   summary="Change billing settings (fields left out keep their value)")  # fmt: skip
    def update(self, request, *args, **kwargs):
        data = self.validated(partial=True)
        return self.answer(tenant_settings.settings_update(tenant=self.tenant, data=data, actor=request.user))

    @extend_schema(request=BillingSettingsInputSerializer, responses={200: BillingSettingsSerializer},
                   summary="Change billing settings (fields left out keep their value)")  # fmt: skip
    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, **kwargs)


class StripeConnectViewSet(ResourceViewSet):
    """The tenant's own Stripe account (Stripe Connect): `GET /billing/stripe/connect` (BILLING+) its
    state; `POST` (ADMIN+) connects one (a new Express or Standard account, or `account_id` the tenant
    already has) and answers Stripe's onboarding link; `DELETE` (ADMIN+) disconnects it. Closed to API
    tokens: where customers' money goes is changed only by a signed-in person."""

    serializer_class = StripeConnectionSerializer
    queryset = StripeConnection.objects.all()
    input_serializers = {"create": StripeConnectSerializer}
    identity_management = True
    required_roles = {"retrieve": Role.BILLING, "create": Role.ADMIN, "destroy": Role.ADMIN}

    @extend_schema(responses={200: StripeConnectionSerializer}, summary="The tenant's Stripe account")
    def retrieve(self, request, *args, **kwargs):
        return self.answer(StripeConnectionSerializer.of(connect.connection_of(self.tenant)))

    @extend_schema(request=StripeConnectSerializer, responses={201: StripeOnboardingSerializer},
                   summary="Connect a Stripe account and get its onboarding link")  # fmt: skip
    def create(self, request, *args, **kwargs):
        data = self.validated()
        connection, link = connect.connect_start(
            tenant=self.tenant, actor=request.user, account_type=data.get("account_type", "express"),
            account_id=data.get("account_id", ""), email=data.get("email", "") or request.user.email,
            country=data.get("country", ""),
        )  # fmt: skip
        body = {**StripeConnectionSerializer.of(connection), "onboarding_url": link["url"],
                "onboarding_expires_at": link["expires_at"]}  # fmt: skip
        return self.answer(body, status.HTTP_201_CREATED, serializer=StripeOnboardingSerializer)

    @extend_schema(request=None, responses={200: StripeConnectionSerializer},
                   summary="Disconnect the tenant's Stripe account (payments become manual)")  # fmt: skip
    def destroy(self, request, *args, **kwargs):
        connection = connect.connect_disconnect(tenant=self.tenant, actor=request.user)
        return self.answer(StripeConnectionSerializer.of(connection))


class WebhookSecretViewSet(ResourceViewSet):
    """The signing secrets of the tenant's own generic webhook endpoint: `GET
    /billing/settings/webhook-secrets` (ADMIN+) lists the valid ones (never the secret); `POST`
    (ADMIN+) rotates: a new secret, answered this once, while the current one stays valid `grace_hours`
    (default 24). Closed to API tokens: a secret signs payments."""

    serializer_class = WebhookSecretsSerializer
    queryset = WebhookSecret.objects.all()
    input_serializers = {"create": WebhookSecretRotateSerializer}
    identity_management = True
    required_roles = {"retrieve": Role.ADMIN, "create": Role.ADMIN}

    def _state(self) -> dict:
        endpoint = self.request.build_absolute_uri(f"/api/v1/billing/webhooks/generic/{self.tenant.slug}")
        return {"endpoint": endpoint, "secrets": list(webhook_secrets.valid(self.tenant).order_by("-created_at"))}

    @extend_schema(responses={200: WebhookSecretsSerializer}, summary="The tenant's generic webhook secrets")
    def retrieve(self, request, *args, **kwargs):
        return self.answer(self._state())

    @extend_schema(request=WebhookSecretRotateSerializer, responses={201: WebhookSecretCreatedSerializer},
                   summary="Rotate the generic webhook secret (the new one is shown once)")  # fmt: skip
    def create(self, request, *args, **kwargs):
        data = self.validated()
        _row, plain = webhook_secrets.secret_rotate(
            tenant=self.tenant, actor=request.user, grace_hours=data.get("grace_hours", 24)
        )
        response = self.answer({**self._state(), "secret": plain}, status.HTTP_201_CREATED,
                               serializer=WebhookSecretCreatedSerializer)  # fmt: skip
        response["Cache-Control"] = "no-store"
        return response


class SubscriptionViewSet(ResourceViewSet):
    """Subscriptions: read BILLING+; create, change (PUT), cancel, suspend, resume and
    usage ADMIN+. Creating one issues its first invoice; paying it activates the subscription."""

    queryset = Subscription.objects.all()
    serializer_class = SubscriptionSerializer
    input_serializers = {
        "create": SubscriptionCreateSerializer,
        "update": SubscriptionUpdateSerializer,
        "cancel": CancelSerializer,
        "usage": UsageSerializer,
    }
    update_methods = {"put": False}
    summaries = {"update": "Change product or quantity now (prorated by day)"}
    filterset_class = SubscriptionFilter
    ordering_fields = ["created_at", "current_period_end", "status"]
    ordering = ["-created_at"]
    search_fields = ["external_ref", "customer__name", "customer__email", "product__name"]
    required_roles = {
        "list": Role.BILLING,
        "retrieve": Role.BILLING,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "cancel": Role.ADMIN,
        "suspend": Role.ADMIN,
        "resume": Role.ADMIN,
        "usage": Role.ADMIN,
    }

    def create_resource(self, data):
        sub = subscriptions.subscription_create(
            tenant=self.tenant, customer=data["customer"], product=data["product"], cycle=data["cycle"],
            currency=data.get("currency"), quantity=data["quantity"], config=data.get("config"),
            external_ref=data.get("external_ref", ""),
        )  # fmt: skip
        return self.current(sub)

    def update_resource(self, obj, data):
        sub = subscriptions.subscription_change(sub=obj, product=data.get("product"), quantity=data.get("quantity"))
        return self.current(sub)

    @extend_schema(request=CancelSerializer, responses={200: SubscriptionSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        sub = self.get_object()
        data = self.validated()
        sub = subscriptions.subscription_cancel(
            sub=sub, at_period_end=data["at_period_end"], credit_unused=data["credit_unused"], actor=request.user
        )
        return self.answer(self.current(sub))

    @extend_schema(request=None, responses={200: SubscriptionSerializer})
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None):
        return self.answer(self.current(subscriptions.subscription_suspend(sub=self.get_object(), actor=request.user)))

    @extend_schema(request=None, responses={200: SubscriptionSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self.answer(self.current(subscriptions.subscription_resume(sub=self.get_object(), actor=request.user)))

    @extend_schema(request=UsageSerializer, responses={201: UsageRecordSerializer, 200: UsageRecordSerializer},
                   summary="Report metered usage (a repeated idempotency key is not counted twice)")  # fmt: skip
    @action(detail=True, methods=["post"])
    def usage(self, request, pk=None):
        sub = self.get_object()
        data = self.validated()
        key = data.get("idempotency_key") or request.headers.get("Idempotency-Key")
        if not key:
            raise InvalidInput("An idempotency_key (or an Idempotency-Key header) is required.",
                               field="idempotency_key")  # fmt: skip
        record, created = subscriptions.usage_record(
            sub=sub, quantity=data["quantity"], key=key, occurred_at=data.get("occurred_at")
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return self.answer(record, code, serializer=UsageRecordSerializer)
