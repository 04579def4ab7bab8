"""The portal's service pages beyond the list: a pod's row refreshed in place, databases with a
password reset for their logins, the customer's contacts, and the cancellation shown before it is
confirmed.

Same rules as ``views``: every page runs in the tenant's scope through ``auth.portal_page`` (the role
is checked before any lookup: 403 reveals nothing), every object is found through ``selectors`` by
the customer (another customer's is a 404), and every change goes through ``acts`` to the owning
app's service (audited with the portal user as actor, via ``portal``).
"""

from __future__ import annotations

from django import forms as django_forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.billing.models import SubscriptionStatus
from apps.billing.services import subscriptions as subscription_services
from apps.common.exceptions import DomainError
from apps.customers.models import Contact

from . import acts, selectors
from .auth import manages_users, owned, portal_page, runs_services, safe_next, sees_money
from .views import own_subscription, page_url, render_page, show_error


class ContactForm(django_forms.Form):
    name = django_forms.CharField(label="Name", max_length=200)
    email = django_forms.EmailField(label="Email address")
    phone = django_forms.CharField(label="Phone", required=False, max_length=40)
    role = django_forms.ChoiceField(label="Receives", choices=Contact.Role.choices, initial=Contact.Role.OTHER)


# --- pods: the row, refreshed in place by portal.js ([data-refresh]) ---------------------------------


@portal_page(runs_services)
def pod_row(request, pk):
    """One pod's row (status, live state from the node, the acts allowed now): what the services
    page shows, fetched again every few seconds so the state updates without a reload."""
    pod = owned(selectors.pod_of(request.portal_user.customer, pk), "pod")
    response = render(
        request,
        "portal/_pod_row.html",
        {"pod": pod, "slug": request.portal_tenant.slug, "next": safe_next(request, page_url(request, "services"))},
    )
    response["Cache-Control"] = "no-store"
    return response


# --- databases -------------------------------------------------------------------------------------


@portal_page(runs_services)
def databases(request):
    customer = request.portal_user.customer
    return render_page(request, "databases.html", {"rows": selectors.database_rows(customer)})


@require_POST
@portal_page(runs_services)
def database_password(request, pk):
    """A new password for one of the customer's database logins: shown on this answer only."""
    user = owned(selectors.database_user_of(request.portal_user.customer, pk), "database user")
    try:
        user, password = acts.database_password_reset(user)
    except DomainError as exc:
        show_error(request, exc)
        return redirect(page_url(request, "databases"))
    response = render_page(request, "database_password.html", {"db_user": user, "password": password})
    response["Cache-Control"] = "no-store"  # the password is never kept: nor by a cache
    return response


# --- contacts (owner) ------------------------------------------------------------------------------


@portal_page()
def contacts(request):
    """Every role sees the customer's contacts; the owner adds, changes and removes them."""
    user = request.portal_user
    form = ContactForm(request.POST or None)
    if request.method == "POST":
        if not manages_users(user):
            return render_page(request, "forbidden.html", status=403)
        if form.is_valid():
            try:
                contact = acts.contact_add(user.customer, acts.ContactData(**form.cleaned_data))
            except (DomainError, ValidationError) as exc:
                show_error(request, exc)
            else:
                messages.success(request, f"{contact.name} is added to your contacts.")
                return redirect(page_url(request, "contacts"))
    return render_page(
        request,
        "contacts.html",
        {"contacts": selectors.contacts_of(user.customer), "form": form, "may_edit": manages_users(user)},
    )


def _own_contact(request, pk) -> Contact:
    contact = owned(selectors.contact_of(request.portal_user.customer, pk), "contact")
    return contact


@portal_page(manages_users)
def contact_edit(request, pk):
    contact = _own_contact(request, pk)
    initial = {f: getattr(contact, f) for f in acts.CONTACT_FIELDS}
    form = ContactForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            acts.contact_change(contact, form.cleaned_data)
        except (DomainError, ValidationError) as exc:
            show_error(request, exc)
        else:
            messages.success(request, "The contact is saved.")
            return redirect(page_url(request, "contacts"))
    return render_page(request, "contact.html", {"contact": contact, "form": form})


@require_POST
@portal_page(manages_users)
def contact_remove(request, pk):
    contact = _own_contact(request, pk)
    acts.contact_remove(contact)
    messages.success(request, f"{contact.name} is removed from your contacts.")
    return redirect(page_url(request, "contacts"))


# --- cancellation, shown before it is confirmed -----------------------------------------------------


@portal_page(sees_money)
def service_cancel_confirm(request, pk):
    """What cancelling does, before it is asked, as billing computes it (``subscription_cancel_preview``,
    the figures ``subscription_cancel`` then applies): at the end of the period (it keeps running,
    nothing is refunded) or now (it ends today and the unused paid days go to the customer's credit
    balance); a service not paid yet ends now with its invoice voided."""
    sub = own_subscription(request, pk)
    pending = sub.status == SubscriptionStatus.PENDING
    at_end = now = None
    if sub.status != SubscriptionStatus.CANCELLED:
        now = subscription_services.subscription_cancel_preview(sub=sub, at_period_end=False, credit_unused=True)
        if not pending and not sub.cancel_at_period_end:
            at_end = subscription_services.subscription_cancel_preview(sub=sub, at_period_end=True)
    return render_page(
        request,
        "service_cancel.html",
        {
            "sub": sub,
            "pending": pending,
            "cancellable": now is not None,
            "at_end": at_end,
            "now": now,
            "days": now.unused_days if now is not None else 0,
            "today": timezone.localdate(),
        },
    )
