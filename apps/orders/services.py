"""Orders: placed and priced, then accepted into ONE invoice and the subscriptions it pays for.

Paying that invoice activates the subscriptions (their ``subscription.activate`` jobs run the
product type's provisioner) and completes the order. Cancelling an unpaid order voids its
invoice, cancels its pending subscriptions and gives the stock back.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.billing.locks import lock_invoice
from apps.billing.models import Invoice, InvoiceStatus, SubscriptionStatus
from apps.billing.services.charges import bill_subscriptions
from apps.billing.services.hooks import PAID, VOIDED
from apps.billing.services.invoices import invoice_void
from apps.billing.services.subscriptions import subscription_create
from apps.catalog.models import Cycle, Product
from apps.catalog.pricing import quote
from apps.catalog.services import product_stock_release, product_stock_take
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.money import quantize

from .models import Order, OrderItem, OrderStatus

ZERO = Decimal(0)


@transaction.atomic
def order_create(*, tenant, customer, items: list[dict], currency: str | None = None, notes: str = "") -> Order:
    if not items:
        raise InvalidInput("An order needs at least one item.", field="items")
    currency = (currency or customer.currency).upper()
    country = str(customer.country or "") or None
    order = Order.objects.create(tenant=tenant, customer=customer, currency=currency, notes=notes)
    rows, subtotal, tax = [], ZERO, ZERO
    for position, item in enumerate(items):
        product: Product = item["product"]
        if product.tenant_id != tenant.pk:
            raise InvalidInput(f"Item {position + 1}: unknown product.", field="items")
        if not product.is_orderable:
            raise Conflict(f"Item {position + 1}: {product.name} is retired or out of stock.", code="not_orderable")
        quantity = item.get("quantity", 1)
        if product.stock is not None and product.stock < quantity:
            raise Conflict(f"Item {position + 1}: only {product.stock} of {product.name} left.", code="out_of_stock")
        q = quote(product, item["cycle"], currency, quantity, country)
        subtotal += q.subtotal
        tax += q.tax
        rows.append(OrderItem(
            tenant_id=tenant.pk, order=order, position=position, product=product, cycle=q.cycle, quantity=quantity,
            config=item.get("config") or {}, unit_price=q.unit_price, setup_fee=q.setup_fee, tax_rate=q.tax_rate,
            total=q.total,
        ))  # fmt: skip
    OrderItem.objects.bulk_create(rows)
    order.subtotal, order.tax_total, order.total = subtotal, tax, subtotal + tax
    order.save()
    audit.created(order, "order.create")
    return order


def _lock(order: Order) -> Order:
    """The order, after its invoice and that invoice's subscriptions when it has one: paying the
    invoice locks them in that order and completes the order last (apps/billing/locks.py)."""
    invoice_id = Order.all_tenants.filter(pk=order.pk).values_list("invoice_id", flat=True).first()
    if invoice_id is not None:
        lock_invoice(invoice_id)
    return Order.all_tenants.select_for_update().select_related("customer", "tenant").get(pk=order.pk)


@transaction.atomic
def order_accept(*, order: Order) -> Order:
    order = _lock(order)
    if order.status != OrderStatus.PENDING:
        raise Conflict(f"A {order.status} order cannot be accepted.")
    with audit.change(order, "order.accept"):  # recorded after the completion, if paid at once
        today = timezone.localdate()
        subs, setup_fees, extra = [], {}, []
        items = list(order.items.select_related("product").order_by("position"))
        for item in items:
            name = item.product.name
            if item.cycle == Cycle.ONETIME:
                if item.product.stock is not None:
                    product_stock_take(product=item.product, quantity=item.quantity)
                extra.append({"description": name, "quantity": item.quantity, "unit_price": item.unit_price,
                              "tax_rate": item.tax_rate})  # fmt: skip
                if item.setup_fee:
                    extra.append({"description": f"Setup: {name}", "quantity": item.quantity,
                                  "unit_price": item.setup_fee, "tax_rate": item.tax_rate})  # fmt: skip
                continue
            sub = subscription_create(
                tenant=order.tenant, customer=order.customer, product=item.product, cycle=item.cycle,
                currency=order.currency, quantity=item.quantity, start=today, config=item.config, bill_now=False,
            )  # fmt: skip
            item.subscription = sub
            item.save(update_fields=["subscription", "updated_at"])
            subs.append(sub)
            if item.setup_fee:
                setup_fees[sub.pk] = quantize(item.setup_fee * item.quantity, order.currency)
        invoice = bill_subscriptions(subs, on=today, setup_fees=setup_fees, extra_lines=extra, customer=order.customer,
                                     currency=order.currency)  # fmt: skip
        order.refresh_from_db()  # the invoice hooks may have completed it (its lock is ours already)
        order.invoice = invoice
        if order.status == OrderStatus.PENDING:
            order.status = OrderStatus.ACCEPTED
        order.accepted_at = timezone.now()
        order.save()
        if invoice is not None and invoice.status == InvoiceStatus.PAID and order.status != OrderStatus.COMPLETED:
            _complete(order)
    return order


@transaction.atomic
def order_cancel(*, order: Order) -> Order:
    order = _lock(order)
    if order.status == OrderStatus.PENDING:
        with audit.change(order, "order.cancel"):
            order.status = OrderStatus.CANCELLED
            order.cancelled_at = timezone.now()
            order.save()
        return order
    if order.status != OrderStatus.ACCEPTED:
        raise Conflict(f"A {order.status} order cannot be cancelled; cancel its subscriptions instead.")
    invoice = Invoice.all_tenants.get(pk=order.invoice_id)
    if invoice.amount_paid > 0:
        raise Conflict("This order's invoice has payments: refund them first.")
    invoice_void(invoice=invoice)  # the void hook cancels the order and its subscriptions
    return Order.all_tenants.get(pk=order.pk)


def _complete(order: Order) -> None:
    with audit.change(order, "order.complete"):
        order.status = OrderStatus.COMPLETED
        order.completed_at = timezone.now()
        order.save()


@PAID.register()
def complete_paid_orders(invoice: Invoice) -> None:
    for order in Order.all_tenants.select_for_update().filter(invoice=invoice, status=OrderStatus.ACCEPTED):
        _complete(order)


@VOIDED.register()
def cancel_voided_orders(invoice: Invoice) -> None:
    for order in Order.all_tenants.select_for_update().filter(invoice=invoice, status=OrderStatus.ACCEPTED):
        with audit.change(order, "order.cancel"):
            for item in order.items.select_related("subscription", "product"):
                sub = item.subscription
                if sub is not None and sub.status == SubscriptionStatus.PENDING:
                    sub.status = SubscriptionStatus.CANCELLED
                    sub.cancelled_at = timezone.now()
                    sub.save(update_fields=["status", "cancelled_at", "updated_at"])
                    audit.record(action="subscription.cancel", obj=sub, changes={"status": ["pending", "cancelled"]})
                if item.product.stock is not None:
                    product_stock_release(product=item.product, quantity=item.quantity)
            order.status = OrderStatus.CANCELLED
            order.cancelled_at = timezone.now()
            order.save()
