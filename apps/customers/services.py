from __future__ import annotations

from collections.abc import Callable

from django.db import IntegrityError, transaction

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.registry import Registry

from .models import Contact, Customer

# Why a customer cannot be deleted: callables customer -> reason | None, registered by the modules
# that own rows pointing at customers (``@DELETE_GUARDS.register()``, e.g. billing's history).
DELETE_GUARDS: Registry[Callable[[Customer], str | None]] = Registry("customer delete guard")


@transaction.atomic
def customer_create(*, tenant, data: dict) -> Customer:
    data = dict(data)
    data.setdefault("currency", tenant.default_currency)
    customer = Customer(tenant=tenant, **data)
    _save_customer(customer)
    audit.created(customer, "customer.create")
    return customer


def _save_customer(customer: Customer) -> None:
    customer.email = customer.email.strip().lower()
    customer.full_clean(exclude=["tenant"])
    if Customer.objects.filter(email__iexact=customer.email).exclude(pk=customer.pk).exists():
        raise InvalidInput("A customer with this email exists already.", field="email")
    try:
        with transaction.atomic():
            customer.save()
    except IntegrityError as exc:  # a concurrent create with the same email won the race
        raise InvalidInput("A customer with this email exists already.", field="email") from exc


@transaction.atomic
def customer_update(*, customer: Customer, data: dict) -> Customer:
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    with audit.change(customer, "customer.update"):
        for field, value in data.items():
            setattr(customer, field, value)
        _save_customer(customer)
    return customer


@transaction.atomic
def customer_delete(*, customer: Customer) -> None:
    """Customers with business history are closed, not deleted; modules register their checks."""
    for check in DELETE_GUARDS:
        reason = check(customer)
        if reason:
            raise Conflict(f"This customer cannot be deleted: {reason}. Close it instead.")
    audit.deleted(customer, "customer.delete")
    customer.delete()


@transaction.atomic
def contact_create(*, customer: Customer, data: dict) -> Contact:
    contact = Contact(tenant_id=customer.tenant_id, customer=customer, **data)
    contact.full_clean(exclude=["tenant", "customer"])
    contact.save()
    audit.created(contact, "contact.create")
    return contact


@transaction.atomic
def contact_update(*, contact: Contact, data: dict) -> Contact:
    with audit.change(contact, "contact.update"):
        for field, value in data.items():
            setattr(contact, field, value)
        contact.full_clean(exclude=["tenant", "customer"])
        contact.save()
    return contact


@transaction.atomic
def contact_delete(*, contact: Contact) -> None:
    audit.deleted(contact, "contact.delete")
    contact.delete()
