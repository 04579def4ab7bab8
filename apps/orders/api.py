import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantScopedViewSet

from . import services
from .models import Order, OrderStatus
from .serializers import OrderCreateSerializer, OrderSerializer


class OrderFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=OrderStatus.choices)
    customer = django_filters.UUIDFilter(field_name="customer_id")

    class Meta:
        model = Order
        fields = ["status", "customer", "currency"]


class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Orders: read MEMBER+; place, accept and cancel BILLING+ (they cost the customer money).

    `POST /` prices the items; `POST /:id/accept` makes one invoice and the subscriptions (pending
    until paid); paying the invoice activates them; `POST /:id/cancel` voids an unpaid order's invoice."""

    queryset = Order.objects.prefetch_related("items")
    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    ordering_fields = ["created_at", "total"]
    ordering = ["-created_at"]
    search_fields = ["customer__name", "customer__email", "notes"]
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.BILLING,
        "accept": Role.BILLING,
        "cancel": Role.BILLING,
    }

    def _answer(self, order, code=status.HTTP_200_OK):
        return Response(OrderSerializer(self.get_queryset().get(pk=order.pk)).data, status=code)

    @extend_schema(request=OrderCreateSerializer, responses={201: OrderSerializer}, summary="Place (price) an order")
    def create(self, request):
        serializer = OrderCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        order = services.order_create(tenant=self.tenant, customer=data["customer"], items=data["items"],
                                      currency=data.get("currency"), notes=data.get("notes", ""))  # fmt: skip
        return self._answer(order, status.HTTP_201_CREATED)

    @extend_schema(
        request=None, responses={200: OrderSerializer}, summary="Accept: invoice it and make its subscriptions"
    )
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        return self._answer(services.order_accept(order=self.get_object()))

    @extend_schema(request=None, responses={200: OrderSerializer}, summary="Cancel an unpaid order")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._answer(services.order_cancel(order=self.get_object()))
