from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, permissions, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.throttling import DynamicScopedRateThrottle
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantReadOnlyViewSet, TenantScopedViewSet

from .filters import CreditNoteFilter, InvoiceFilter, PaymentFilter
from .models import CreditNote, Invoice, Payment, PaymentMethod, WebhookEvent
from .serializers import (
    CheckoutLinkSerializer,
    CreditNoteCreateSerializer,
    CreditNoteSerializer,
    InvoiceCreateSerializer,
    InvoiceSerializer,
    InvoiceUpdateSerializer,
    PaymentSerializer,
    PaySerializer,
    RefundSerializer,
)
from .services import credit_notes, documents, invoices, payments, stripe_gateway, webhooks


class InvoiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantScopedViewSet):
    """Invoices (CONTRACT §4): read BILLING+, every change ADMIN+.

    Drafts are edited with PATCH and deleted with DELETE; `issue` numbers and freezes them.
    Illegal transitions answer 409.
    """

    queryset = Invoice.objects.prefetch_related("lines")
    serializer_class = InvoiceSerializer
    filterset_class = InvoiceFilter
    search_fields = ["number", "customer__name", "customer__email", "notes"]
    ordering_fields = ["created_at", "issue_date", "due_date", "total", "number"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
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

    def _answer(self, invoice, code=status.HTTP_200_OK):
        fresh = self.get_queryset().get(pk=invoice.pk)
        return Response(InvoiceSerializer(fresh).data, status=code)

    @extend_schema(request=InvoiceCreateSerializer, responses={201: InvoiceSerializer}, summary="Create a draft")
    def create(self, request):
        serializer = InvoiceCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        invoice = invoices.invoice_create(
            tenant=request.tenant, customer=data["customer"], lines=data["lines"], currency=data.get("currency"),
            due_date=data.get("due_date"), notes=data.get("notes", ""),
        )  # fmt: skip
        return self._answer(invoice, status.HTTP_201_CREATED)

    @extend_schema(request=InvoiceUpdateSerializer, responses={200: InvoiceSerializer}, summary="Edit a draft")
    def partial_update(self, request, pk=None):
        invoice = self.get_object()
        serializer = InvoiceUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._answer(invoices.invoice_update_draft(invoice=invoice, data=serializer.validated_data))

    def perform_destroy(self, instance):
        invoices.invoice_delete_draft(invoice=instance)

    @extend_schema(request=None, responses={200: InvoiceSerializer}, summary="Issue a draft: number it, open it")
    @action(detail=True, methods=["post"])
    def issue(self, request, pk=None):
        return self._answer(invoices.invoice_issue(invoice=self.get_object()))

    @extend_schema(request=None, responses={200: InvoiceSerializer}, summary="Void an open invoice")
    @action(detail=True, methods=["post"])
    def void(self, request, pk=None):
        return self._answer(invoices.invoice_void(invoice=self.get_object()))

    @extend_schema(request=None, responses={200: InvoiceSerializer}, summary="Mark an open invoice uncollectible")
    @action(detail=True, methods=["post"], url_path="mark-uncollectible", url_name="mark-uncollectible")
    def mark_uncollectible(self, request, pk=None):
        return self._answer(invoices.invoice_mark_uncollectible(invoice=self.get_object()))

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
        serializer = PaySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data["method"] == PaymentMethod.STRIPE:
            link = stripe_gateway.checkout_link(invoice=invoice)
            return Response(CheckoutLinkSerializer(link).data, status=status.HTTP_201_CREATED)
        payments.payment_record(
            invoice=invoice, amount=data["amount"], method=data["method"], reference=data.get("reference", ""),
            actor=request.user,
        )  # fmt: skip
        return self._answer(invoice)

    @extend_schema(request=CreditNoteCreateSerializer, responses={201: CreditNoteSerializer},
                   summary="Issue a credit note against this invoice (all that is left, or per line)")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="credit-notes", url_name="credit-notes")
    def credit(self, request, pk=None):
        invoice = self.get_object()
        serializer = CreditNoteCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        note = credit_notes.credit_note_create(invoice=invoice, lines=data.get("lines"), reason=data.get("reason", ""))
        note = CreditNote.objects.prefetch_related("lines").get(pk=note.pk)
        return Response(CreditNoteSerializer(note).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY}, summary="The invoice as a PDF")
    @action(detail=True, methods=["get"])
    def pdf(self, request, pk=None):
        invoice = self.get_object()
        return pdf_response(documents.invoice_pdf(invoice), invoice.number or f"draft-{invoice.pk}")


def pdf_response(data: bytes, name: str) -> HttpResponse:
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{name}.pdf"'
    return response


class PaymentViewSet(TenantReadOnlyViewSet):
    """Payments received (read BILLING+); `POST /:id/refund` ADMIN+."""

    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer
    filterset_class = PaymentFilter
    ordering_fields = ["received_at", "amount"]
    ordering = ["-received_at"]
    search_fields = ["reference"]
    required_roles = {"list": Role.BILLING, "retrieve": Role.BILLING, "refund": Role.ADMIN}

    @extend_schema(request=RefundSerializer, responses={201: CreditNoteSerializer},
                   summary="Refund part or all of a payment (with its credit note)")  # fmt: skip
    @action(detail=True, methods=["post"])
    def refund(self, request, pk=None):
        serializer = RefundSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        note = payments.payment_refund(
            payment=self.get_object(), amount=serializer.validated_data["amount"],
            reason=serializer.validated_data.get("reason", ""),
        )  # fmt: skip
        note = CreditNote.objects.prefetch_related("lines").get(pk=note.pk)
        return Response(CreditNoteSerializer(note).data, status=status.HTTP_201_CREATED)


class CreditNoteViewSet(TenantReadOnlyViewSet):
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


WebhookAnswer = inline_serializer("WebhookAnswer", {"received": serializers.BooleanField(),
                                                     "status": serializers.CharField()})  # fmt: skip


class _WebhookView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [DynamicScopedRateThrottle]
    throttle_scope = "public"

    def answer(self, event: WebhookEvent) -> Response:
        return Response({"received": True, "status": event.status})


class StripeWebhookView(_WebhookView):
    """Stripe events, verified like `stripe.Webhook.construct_event` (5-minute tolerance)."""

    @extend_schema(request=None, responses={200: WebhookAnswer, 400: OpenApiResponse(description="Bad signature")},
                   auth=[], summary="Stripe webhook")  # fmt: skip
    def post(self, request):
        raw = request.body
        try:
            payload = webhooks.verify_stripe(raw, request.headers.get("Stripe-Signature"))
        except webhooks.BadSignature as exc:
            return Response({"detail": f"Invalid signature: {exc}"}, status=status.HTTP_400_BAD_REQUEST)
        if not payload.get("id") or not payload.get("type"):
            return Response({"detail": "Not a Stripe event."}, status=status.HTTP_400_BAD_REQUEST)
        event = webhooks.receive(
            provider="stripe", event_id=str(payload["id"]), type=str(payload["type"]),
            created=webhooks.stripe_created(payload), payload=payload, raw=raw,
        )  # fmt: skip
        return self.answer(event)


class GenericEventSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=255)
    type = serializers.CharField(max_length=100)
    data = serializers.DictField()


class GenericWebhookView(_WebhookView):
    """Our own signed format (CONTRACT §5): `X-Mpanel-Signature: t=<unix>,v1=<hex>`."""

    @extend_schema(request=GenericEventSerializer,
                   responses={200: WebhookAnswer, 400: OpenApiResponse(description="Bad signature or body")},
                   auth=[], summary="Generic payment webhook")  # fmt: skip
    def post(self, request):
        raw = request.body
        try:
            payload = webhooks.verify_generic(raw, request.headers.get("X-Mpanel-Signature"))
        except webhooks.BadSignature as exc:
            return Response({"detail": f"Invalid signature: {exc}"}, status=status.HTTP_400_BAD_REQUEST)
        serializer = GenericEventSerializer(data=payload if isinstance(payload, dict) else {})
        serializer.is_valid(raise_exception=True)
        event = webhooks.receive(
            provider="generic", event_id=serializer.validated_data["id"], type=serializer.validated_data["type"],
            created=None, payload=payload, raw=raw,
        )  # fmt: skip
        return self.answer(event)
