from decimal import Decimal

from django.db import models
from django.db.models import Q

from apps.tenancy.models import TenantOwnedModel


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending (priced, not accepted)"
    ACCEPTED = "accepted", "Accepted (invoiced, unpaid)"
    COMPLETED = "completed", "Completed (paid)"
    CANCELLED = "cancelled", "Cancelled"


class Order(TenantOwnedModel):
    """A customer's purchase of catalog items: priced when placed, invoiced when accepted."""

    audit_fields = ("status", "currency", "subtotal", "tax_total", "total", "invoice")

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=10, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    currency = models.CharField(max_length=3)
    subtotal = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal(0))
    tax_total = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal(0))
    total = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal(0))
    invoice = models.OneToOneField(
        "billing.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="order"
    )
    notes = models.TextField(blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["tenant", "status", "-created_at"]),
            models.Index(fields=["tenant", "customer"]),
        ]

    def __str__(self) -> str:
        return f"Order {str(self.pk)[:8]} ({self.status})"


class OrderItem(TenantOwnedModel):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField(default=0)
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="order_items")
    cycle = models.CharField(max_length=10)
    quantity = models.PositiveIntegerField(default=1)
    config = models.JSONField(default=dict, blank=True, help_text="e.g. the domain name or the plan.")
    unit_price = models.DecimalField(max_digits=18, decimal_places=4)
    setup_fee = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal(0))
    tax_rate = models.DecimalField(max_digits=7, decimal_places=4, default=Decimal(0))
    total = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal(0))
    subscription = models.OneToOneField(
        "billing.Subscription", null=True, blank=True, on_delete=models.SET_NULL, related_name="order_item"
    )

    class Meta:
        ordering = ["order", "position"]
        constraints = [models.CheckConstraint(condition=Q(quantity__gte=1), name="order_item_quantity_positive")]
        indexes = [models.Index(fields=["tenant", "order", "position"])]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product} ({self.cycle})"
