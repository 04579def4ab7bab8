"""The portal's *Payment methods* page (owner and billing; technical: 403): the customer's saved cards,
the default one renewals are charged on, removing one, and adding one on Stripe's hosted page (Checkout
in ``setup`` mode, on the tenant's connected account: no card number ever reaches us). The card is
listed when Stripe's ``setup_intent.succeeded`` arrives (``apps.billing.services.cards``).

A tenant that offers no saved cards (no connected account that takes charges, or ``stripe`` not among
its payment methods) shows the page with the methods it does accept, and no button to add a card.
"""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from apps.billing.models import PaymentMethod
from apps.billing.services import cards, tenant_settings
from apps.common.exceptions import DomainError

from .auth import owned, portal_page, sees_money
from .services import absolute
from .views import page_url, render_page, show_error


def _own_card(request, pk):
    card = owned(cards.card_of(request.portal_user.customer, pk), "card")
    return card


def accepted_methods(tenant) -> list[str]:
    """The ways the tenant takes money besides saved cards, as a customer reads them."""
    labels = dict(PaymentMethod.choices)
    offered = tenant_settings.settings_of(tenant).payment_methods
    return [str(labels[m]) for m in offered if m in labels and m not in (PaymentMethod.STRIPE, PaymentMethod.GENERIC)]


@portal_page(sees_money)
def payment_methods(request):
    tenant = request.portal_tenant
    if request.GET.get("saved") == "1":
        messages.success(request, "Thank you: your card is being saved and appears here in a moment.")
    elif request.GET.get("cancelled") == "1":
        messages.info(request, "No card was added.")
    return render_page(
        request,
        "payment_methods.html",
        {
            "cards": list(cards.cards_of(request.portal_user.customer)),
            "cards_offered": cards.cards_account(tenant) is not None,
            "accepted": accepted_methods(tenant),
            "waiting": request.GET.get("saved") == "1",
        },
    )


@require_POST
@portal_page(sees_money)
def payment_method_add(request):
    page = page_url(request, "payment-methods")
    try:
        link = cards.setup_start(
            customer=request.portal_user.customer,
            success_url=absolute(f"{page}?saved=1"),
            cancel_url=absolute(f"{page}?cancelled=1"),
            actor=request.portal_user,
        )
    except DomainError as exc:
        show_error(request, exc)
        return redirect(page)
    # A page of ours that goes on to Stripe: the portal's CSP keeps form posts on our origin.
    return render_page(request, "card_setup_redirect.html", {"url": link["url"]})


@require_POST
@portal_page(sees_money)
def payment_method_default(request, pk):
    card = _own_card(request, pk)
    try:
        cards.card_set_default(card=card, actor=request.portal_user)
    except DomainError as exc:
        show_error(request, exc)
    else:
        messages.success(request, f"{card} is now charged for renewals.")
    return redirect(page_url(request, "payment-methods"))


@require_POST
@portal_page(sees_money)
def payment_method_remove(request, pk):
    card = _own_card(request, pk)
    try:
        cards.card_remove(card=card, actor=request.portal_user)
    except DomainError as exc:
        show_error(request, exc)
    else:
        messages.success(request, f"{card} was removed.")
    return redirect(page_url(request, "payment-methods"))
