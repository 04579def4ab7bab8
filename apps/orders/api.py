from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from . import services
from .filters import OrderFilter
from .models import Order
from .serializers import OrderCreateSerializer, OrderSerializer


class OrderViewSet(ResourceViewSet):
    """Orders: read MEMBER+; place, accept and cancel BILLING+ (they cost the customer money).

    `POST /` prices the items; `POST /:id/accept` makes one invoice and the subscriptions (pending
    until paid); paying the invoice activates them; `POST /:id/cancel` voids an unpaid order's invoice."""

    queryset = Order.objects.prefetch_related("items")
    serializer_class = OrderSerializer
    input_serializers = {"create": OrderCreateSerializer}
    summaries = {"create": "Place (price) an order"}
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

    def create_resource(self, data):
        order = services.order_create(tenant=self.tenant, customer=data["customer"], items=data["items"],
                                      currency=data.get("currency"), notes=data.get("notes", ""))  # fmt: skip
        return self.current(order)

    @extend_schema(
        request=None, responses={200: OrderSerializer}, summary="Accept: invoice it and make its subscriptions"
    )
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        return self.answer(self.current(services.order_accept(order=self.get_object())))

    @extend_schema(request=None, responses={200: OrderSerializer}, summary="Cancel an unpaid order")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self.answer(self.current(services.order_cancel(order=self.get_object())))
