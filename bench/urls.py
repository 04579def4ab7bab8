"""The floors: the least a request of each kind can cost on this stack, served next to the real API.

- /bench/fixed: a plain Django view returning fixed JSON (the cost of HTTP + WSGI + middleware);
- /bench/customers/<tenant>: a bare DRF ListAPIView over the same table and page as
  /api/v1/customers/ (no authentication, no role check, no scoping, no filters);
- /bench/webhook: the least a correct webhook receiver does: check the HMAC signature and store
  the event row once (no payment applied).
"""

import contextlib

from django.db import IntegrityError
from django.http import JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django_countries.serializer_fields import CountryField
from rest_framework import generics, permissions, serializers
from rest_framework.pagination import PageNumberPagination

from apps.billing.models import WebhookEvent
from apps.billing.services import webhooks
from apps.customers.models import Customer
from mpanel.urls import urlpatterns as panel


def fixed(request):
    return JsonResponse({"status": "ok", "items": [1, 2, 3]})


class BareCustomerSerializer(serializers.ModelSerializer):
    country = CountryField(required=False, allow_blank=True)

    class Meta:
        model = Customer
        fields = ["id", "kind", "name", "company", "email", "billing_email", "phone", "tax_id", "currency", "status",
                  "address_line1", "address_line2", "city", "state", "postal_code", "country", "notes",
                  "created_at", "updated_at"]  # fmt: skip


class Page50(PageNumberPagination):
    page_size = 50


class BareCustomerList(generics.ListAPIView):
    serializer_class = BareCustomerSerializer
    pagination_class = Page50
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    filter_backends: list = []
    throttle_classes: list = []

    def get_queryset(self):
        return Customer.all_tenants.filter(tenant_id=self.kwargs["tenant"]).order_by("-created_at")


@csrf_exempt
def bare_webhook(request):
    try:
        payload = webhooks.verify_generic(request.body, request.headers.get("X-Mpanel-Signature"))
    except webhooks.BadSignature as exc:
        return JsonResponse({"detail": str(exc)}, status=400)
    with contextlib.suppress(IntegrityError):  # a repeated delivery: stored once
        WebhookEvent.objects.create(provider="bench", event_id=payload["id"], type=payload["type"], payload=payload,
                                    raw_body=request.body.decode())  # fmt: skip
    return JsonResponse({"status": "received"})


urlpatterns = [
    path("bench/fixed", fixed),
    path("bench/customers/<uuid:tenant>", BareCustomerList.as_view()),
    path("bench/webhook", bare_webhook),
    path("", include(panel)),
]
