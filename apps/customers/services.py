from __future__ import annotations

from django.db import IntegrityError, transaction

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput

from .models import Contact, Customer

CUSTOMER_FIELDS = [
    "kind",
    "name",
    "company",
    "email",
    "billing_email",
    "phone",
    "tax_id",
    "currency",
    "status",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "notes",
]
CONTACT_FIELDS = ["customer", "name", "email", "phone", "role"]


@transaction.atomic
def customer_create(*, tenant, data: dict) -> Customer:
    data = dict(data)
    data.setdefault("currency", tenant.default_currency)
    customer = Customer(tenant=tenant, **data)
    _save_customer(customer)
    audit.record(action="customer.create", obj=customer, after=audit.snapshot(customer, CUSTOMER_FIELDS))
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
    before = audit.snapshot(customer, CUSTOMER_FIELDS)
    for field, value in data.items():
        setattr(customer, field, value)
    _save_customer(customer)
    audit.record(action="customer.update", obj=customer, before=before, after=audit.snapshot(customer, CUSTOMER_FIELDS))
    return customer


@transaction.atomic
def customer_delete(*, customer: Customer) -> None:
    """Customers with business history are closed, not deleted; modules register their checks."""
    for check in DELETE_GUARDS:
        reason = check(customer)
        if reason:
            raise Conflict(f"This customer cannot be deleted: {reason}. Close it instead.")
    audit.record(action="customer.delete", obj=customer, before=audit.snapshot(customer, CUSTOMER_FIELDS))
    customer.delete()


# Callables customer -> reason|None, added by modules that own rows pointing at customers.
DELETE_GUARDS: list = []


@transaction.atomic
def contact_create(*, customer: Customer, data: dict) -> Contact:
    contact = Contact(tenant_id=customer.tenant_id, customer=customer, **data)
    contact.full_clean(exclude=["tenant", "customer"])
    contact.save()
    audit.record(action="contact.create", obj=contact, after=audit.snapshot(contact, CONTACT_FIELDS))
    return contact


@transaction.atomic
def contact_update(*, contact: Contact, data: dict) -> Contact:
    before = audit.snapshot(contact, CONTACT_FIELDS)
    for field, value in data.items():
        setattr(contact, field, value)
    contact.full_clean(exclude=["tenant", "customer"])
    contact.save()
    audit.record(action="contact.update", obj=contact, before=before, after=audit.snapshot(contact, CONTACT_FIELDS))
    return contact


@transaction.atomic
def contact_delete(*, contact: Contact) -> None:
    audit.record(action="contact.delete", obj=contact, before=audit.snapshot(contact, CONTACT_FIELDS))
    contact.delete()
