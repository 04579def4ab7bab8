"""What a customer may do to the resources its services run, for the portal's pages and its API alike.

The owning app's service makes every change (and audits it: the portal user is the actor, ``via`` is
``portal``, set by ``auth``). What is decided here is only what the portal allows on top of those
services' own state rules:

- a pod is restarted, suspended or resumed only while its subscription runs (active or past due): a
  pod suspended with its subscription (for non-payment, or by the business) is never resumed from the
  portal: a payment, or the business, lifts that suspension;
- a database login's password is reset only when every grant it has is on this customer's databases
  (``selectors.database_users_of``); the new password is answered once and never stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.billing.models import Subscription, SubscriptionStatus
from apps.cloudpods import services as pod_services
from apps.cloudpods.models import CloudPod, PodStatus
from apps.common.exceptions import Conflict, InvalidInput
from apps.customers import services as customer_services
from apps.customers.models import Contact, Customer
from apps.databases import services as database_services
from apps.databases.models import DatabaseUser
from apps.domains import services as domain_services
from apps.domains.models import Domain
from apps.mail import services as mail_services
from apps.mail.models import Mailbox

POD_ACTIONS = ("restart", "suspend", "resume")
RUNNING_SUBSCRIPTION = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
CONTACT_FIELDS = ("name", "email", "phone", "role")


def pod_subscription(pod: CloudPod) -> Subscription | None:
    return Subscription.objects.filter(pk=pod.subscription).first() if pod.subscription else None


def pod_actions(pod: CloudPod, subscription: Subscription | None = None) -> list[str]:
    """The acts the portal offers on ``pod`` now (none while its subscription does not run)."""
    sub = subscription if subscription is not None else pod_subscription(pod)
    if sub is None or sub.status not in RUNNING_SUBSCRIPTION:
        return []
    if pod.status == PodStatus.RUNNING:
        return ["restart", "suspend"]
    if pod.status == PodStatus.SUSPENDED:
        return ["resume"]
    return []


def pod_act(pod: CloudPod, action: str) -> CloudPod:
    if action not in POD_ACTIONS:
        raise InvalidInput(f"Unknown action {action!r}: one of {', '.join(POD_ACTIONS)}.", field="action")
    sub = pod_subscription(pod)
    if sub is None or sub.status not in RUNNING_SUBSCRIPTION:
        status = sub.status if sub is not None else "missing"
        raise Conflict(
            f"This pod's service is {status}: it is changed by a payment or by us, not from here.",
            code="service_not_running",
        )
    if action == "restart":
        return pod_services.pod_restart(pod=pod)
    if action == "suspend":
        return pod_services.pod_suspend(pod=pod)
    return pod_services.pod_resume(pod=pod)


def database_password_reset(user: DatabaseUser) -> tuple[DatabaseUser, str]:
    """A new password for the login (shown once; the job applies it on the server)."""
    return database_services.user_rotate_password(user=user)


def mailbox_password(box: Mailbox, password: str) -> Mailbox:
    return mail_services.mailbox_update(mailbox=box, data={"password": password})


def domain_auto_renew(domain: Domain, on: bool) -> Domain:
    return domain_services.domain_update(domain=domain, data={"auto_renew": bool(on)})


@dataclass(frozen=True)
class ContactData:
    name: str
    email: str
    phone: str = ""
    role: str = Contact.Role.OTHER

    def as_dict(self) -> dict:
        return {"name": self.name, "email": self.email, "phone": self.phone, "role": self.role}


def contact_add(customer: Customer, data: ContactData) -> Contact:
    return customer_services.contact_create(customer=customer, data=data.as_dict())


def contact_change(contact: Contact, data: dict) -> Contact:
    return customer_services.contact_update(
        contact=contact, data={k: v for k, v in data.items() if k in CONTACT_FIELDS}
    )


def contact_remove(contact: Contact) -> None:
    customer_services.contact_delete(contact=contact)
