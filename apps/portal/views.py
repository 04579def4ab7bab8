"""The customer portal's pages, at ``/portal/<tenant-slug>/``: server-rendered, one customer's data.

Every page runs inside the tenant's scope (``auth.portal_page`` / ``auth.public_page``) and reads only
through ``selectors`` (filtered by the customer): another customer's object is a 404. Roles: money
pages (invoices, payment, orders) need ``owner`` or ``billing``; service actions ``owner`` or
``technical``; the customer's users ``owner``. A role that may not see a page gets 403.
"""

from __future__ import annotations

import base64
from decimal import Decimal

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.audit import services as audit
from apps.billing.models import Invoice, InvoiceStatus, SubscriptionStatus
from apps.billing.services import documents, stripe_gateway
from apps.billing.services import subscriptions as subscription_services
from apps.catalog.models import Cycle, Product, ProductType, Visibility
from apps.catalog.pricing import price_table, quote
from apps.common import display
from apps.common.exceptions import DomainError
from apps.customers import services as customer_services
from apps.domains import services as domain_services
from apps.mail import services as mail_services
from apps.orders import services as order_services
from apps.orders.models import OrderStatus
from apps.whitelabel.selectors import brand_for

from . import acts, forms, selectors, services, signed
from .auth import (
    end_web_session,
    manages_users,
    owned,
    portal_page,
    public_page,
    runs_services,
    safe_next,
    sees_money,
    start_web_session,
    web_session,
)
from .models import PortalSession, PortalSettings, PortalUser

GUEST_INVOICES = "mpanel_portal_guest_invoices"  # invoice ids opened through a signed email link
CART = "mpanel_portal_cart"


def page_url(request, name: str, **kwargs) -> str:
    return reverse(f"portal:{name}", kwargs={"tenant_slug": request.portal_tenant.slug, **kwargs})


def render_page(request, template: str, values: dict | None = None, status: int = 200) -> HttpResponse:
    tenant = request.portal_tenant
    user = getattr(request, "portal_user", None)
    base = {
        "brand": brand_for(tenant),  # apps/whitelabel: name, logo, colours, contact
        "tenant": tenant,
        "portal_user": user,
        "slug": tenant.slug,
        "signup_open": PortalSettings.of(tenant).allow_signup,
    }
    return render(request, f"portal/{template}", {**base, **(values or {})}, status=status)


def show_error(request, exc: DomainError | ValidationError) -> None:
    text = exc.message if isinstance(exc, DomainError) else " ".join(exc.messages)
    messages.error(request, text)


# --- visitors -----------------------------------------------------------------------------------


@public_page
def index(request):
    if web_session(request, request.portal_tenant) is not None:
        return redirect(page_url(request, "dashboard"))
    return redirect(page_url(request, "login"))


@public_page
def login_view(request):
    tenant = request.portal_tenant
    form = forms.LoginForm(request.POST or None)
    need_code = False
    if request.method == "POST" and form.is_valid():
        try:
            _session, raw = services.login(
                tenant=tenant,
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                code=form.cleaned_data["code"],
            )
        except services.SecondFactorRequired as exc:
            need_code = True
            messages.info(request, exc.message)
        except services.LockedOut as exc:
            messages.error(request, exc.message)
            return render_page(request, "login.html", {"form": form}, status=429)
        except DomainError as exc:
            show_error(request, exc)
        else:
            start_web_session(request, tenant, raw)
            return redirect(safe_next(request, page_url(request, "dashboard")))
    return render_page(
        request, "login.html", {"form": form, "need_code": need_code, "next": request.GET.get("next", "")}
    )


@require_POST
@public_page
def logout_view(request):
    tenant = request.portal_tenant
    session = web_session(request, tenant)
    if session is not None:
        services.session_revoke(session=session, actor=session.user)
    end_web_session(request, tenant)
    return redirect(page_url(request, "login"))


@public_page
def invitation(request, token: str):
    tenant = request.portal_tenant
    user = services.user_for_link(tenant, token, "invitation")
    if user is None or user.has_password:
        return render_page(request, "link_invalid.html", status=400)
    form = forms.InvitationForm(request.POST or None, initial={"name": user.name})
    if request.method == "POST" and form.is_valid():
        try:
            services.invitation_accept(
                tenant=tenant, token=token, password=form.cleaned_data["password"], name=form.cleaned_data["name"]
            )
        except DomainError as exc:
            show_error(request, exc)
        else:
            messages.success(request, "Your password is set. Log in to continue.")
            return redirect(page_url(request, "login"))
    return render_page(request, "invitation.html", {"form": form, "invited": user})


@public_page
def reset_request(request):
    form = forms.EmailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.password_reset_request(tenant=request.portal_tenant, email=form.cleaned_data["email"])
        messages.success(request, "If this address has an account, we have emailed it a link to reset the password.")
        return redirect(page_url(request, "login"))
    return render_page(request, "reset_request.html", {"form": form})


@public_page
def reset_confirm(request, token: str):
    tenant = request.portal_tenant
    if services.user_for_link(tenant, token, "reset") is None:
        return render_page(request, "link_invalid.html", status=400)
    form = forms.SetPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.password_reset_confirm(tenant=tenant, token=token, password=form.cleaned_data["password"])
        except DomainError as exc:
            show_error(request, exc)
        else:
            messages.success(request, "Your new password is set. Log in with it.")
            return redirect(page_url(request, "login"))
    return render_page(request, "reset_confirm.html", {"form": form})


@public_page
def signup(request):
    tenant = request.portal_tenant
    if not PortalSettings.of(tenant).allow_signup:
        return render_page(request, "signup_closed.html", status=404)
    form = forms.SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.signup(
                tenant=tenant,
                data=services.SignUp(
                    name=data["name"],
                    email=data["email"],
                    password=data["password"],
                    company=data["company"],
                    country=str(data["country"] or ""),
                ),
            )
        except DomainError as exc:
            show_error(request, exc)
        else:
            return render_page(request, "signup_sent.html", {"email": data["email"]})
    return render_page(request, "signup.html", {"form": form})


@public_page
def verify(request, token: str):
    try:
        services.email_verify(tenant=request.portal_tenant, token=token)
    except DomainError:
        return render_page(request, "link_invalid.html", status=400)
    messages.success(request, "Your address is confirmed. Log in to continue.")
    return redirect(page_url(request, "login"))


@public_page
def catalog(request):
    """The tenant's public products with their prices: where visitors start an order."""
    products = Product.objects.filter(visibility=Visibility.PUBLIC).prefetch_related("prices").order_by("name")
    rows = [(p, [r for r in price_table(p).rows]) for p in products if p.is_orderable]
    return render_page(
        request, "catalog.html", {"products": rows, "logged_in": web_session(request, request.portal_tenant)}
    )


# --- the signed invoice link of the emails (no login) -------------------------------------------


def _guest_invoice(request, invoice_id):
    return Invoice.objects.exclude(status=InvoiceStatus.DRAFT).prefetch_related("lines").filter(pk=invoice_id).first()


@public_page
def invoice_link(request, token: str):
    """The invoice an email links to, for whoever holds the link (signed, 45 days): view and pay."""
    invoice_id = signed.invoice_id_from_token(token, request.portal_tenant)
    invoice = _guest_invoice(request, invoice_id) if invoice_id else None
    if invoice is None:
        return render_page(request, "link_invalid.html", status=404)
    granted = list(request.session.get(GUEST_INVOICES) or [])
    if str(invoice.pk) not in granted:
        request.session[GUEST_INVOICES] = [*granted, str(invoice.pk)][-20:]
    if request.method == "POST":
        return _checkout(request, invoice, actor=None)
    return render_page(request, "invoice_guest.html", {"invoice": invoice, "token": token})


def _checkout(request, invoice, *, actor):
    try:
        link = stripe_gateway.checkout_link(invoice=invoice)
    except DomainError as exc:
        show_error(request, exc)
        return redirect(request.path)
    with transaction.atomic():
        audit.record(
            action="portal.invoice_checkout", obj=invoice, changes={"checkout_session": link["id"]}, **audit.by(actor)
        )
    # A page of ours that goes on to Stripe: the portal's CSP keeps form posts on our origin.
    return render_page(request, "checkout_redirect.html", {"url": link["url"], "invoice": invoice})


@public_page
def invoice_paid(request, pk):
    """Stripe's success and cancel page: the payment as the webhook recorded it, polled until paid."""
    tenant = request.portal_tenant
    session = web_session(request, tenant)
    invoice = None
    if session is not None:
        request.portal_user = session.user  # the page shows the logged-in navigation
    if session is not None and session.user.sees_money:
        invoice = selectors.invoice_of(session.user.customer, pk)
    elif str(pk) in (request.session.get(GUEST_INVOICES) or []):
        invoice = _guest_invoice(request, pk)
    cancelled = request.GET.get("cancelled") == "1"
    if request.headers.get("HX-Request") or request.GET.get("poll") == "1":
        paid = invoice is not None and invoice.status == InvoiceStatus.PAID
        return JsonResponse({"paid": paid, "status": invoice.status if invoice else "unknown"})
    return render_page(request, "invoice_paid.html", {"invoice": invoice, "cancelled": cancelled, "logged_in": session})


# --- logged in ----------------------------------------------------------------------------------


@portal_page()
def dashboard(request):
    return render_page(request, "dashboard.html", {"board": selectors.dashboard(request.portal_user)})


@portal_page(sees_money)
def invoices(request):
    rows = selectors.invoices_of(request.portal_user.customer)[:200]
    return render_page(request, "invoices.html", {"invoices": rows})


def _own_invoice(request, pk):
    invoice = owned(selectors.invoice_of(request.portal_user.customer, pk), "invoice")
    return invoice


@portal_page(sees_money)
def invoice_detail(request, pk):
    invoice = _own_invoice(request, pk)
    payable = invoice.status in selectors.PAYABLE and invoice.amount_due > 0
    return render_page(request, "invoice.html", {"invoice": invoice, "payable": payable})


@portal_page(sees_money)
def invoice_pdf(request, pk):
    invoice = _own_invoice(request, pk)
    response = HttpResponse(documents.invoice_pdf(invoice), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{invoice.number}.pdf"'
    return response


@require_POST
@portal_page(sees_money)
def invoice_pay(request, pk):
    return _checkout(request, _own_invoice(request, pk), actor=request.portal_user)


@portal_page()
def service_list(request):
    customer = request.portal_user.customer
    return render_page(
        request,
        "services.html",
        {
            "subscriptions": selectors.subscriptions_of(customer)[:200],
            "resources": selectors.resources_of(customer) if request.portal_user.runs_services else None,
        },
    )


def own_subscription(request, pk):
    sub = owned(selectors.subscription_of(request.portal_user.customer, pk), "service")
    return sub


@portal_page()
def service_detail(request, pk):
    sub = own_subscription(request, pk)
    user = request.portal_user
    preview, choices = None, []
    if user.sees_money and sub.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE):
        choices = selectors.plan_choices(sub)
        form = forms.ChangePlanForm(request.GET or None)
        if request.GET and form.is_valid():
            product = owned(next((p for p in choices if p.pk == form.cleaned_data["product"]), None), "plan")
            try:
                preview = subscription_services.subscription_change_preview(
                    sub=sub, product=product, quantity=form.cleaned_data["quantity"]
                )
            except DomainError as exc:
                show_error(request, exc)
    return render_page(
        request,
        "service.html",
        {
            "sub": sub,
            "pods": selectors.pods_of(user.customer, sub) if user.runs_services else [],
            "usage": selectors.hosting_usage(sub),
            "choices": choices,
            "preview": preview,
            "credit": -preview.net if preview is not None else None,
        },
    )


@require_POST
@portal_page(sees_money)
def service_change(request, pk):
    sub = own_subscription(request, pk)
    form = forms.ChangePlanForm(request.POST)
    if form.is_valid():
        product = owned(selectors.plan_choice(sub, form.cleaned_data["product"]), "plan")
        try:
            subscription_services.subscription_change(sub=sub, product=product, quantity=form.cleaned_data["quantity"])
        except DomainError as exc:
            show_error(request, exc)
        else:
            messages.success(request, "Your plan is changed; the difference is on your next invoice or your credit.")
    return redirect(page_url(request, "service", pk=sub.pk))


@require_POST
@portal_page(sees_money)
def service_cancel(request, pk):
    """``when=now``: ends the service today and credits the unused paid days to the balance (a second
    post finds it cancelled: nothing is credited twice); otherwise at the end of the paid period."""
    sub = own_subscription(request, pk)
    now = request.POST.get("when") == "now" or sub.status == SubscriptionStatus.PENDING
    try:
        _sub, quote = subscription_services.subscription_cancel_quoted(
            sub=sub, at_period_end=not now, credit_unused=now
        )
    except DomainError as exc:
        show_error(request, exc)
    else:
        if not now:
            messages.success(request, "Your service will end at the end of the period already paid for.")
        elif quote.credit > 0:
            amount = display.money(quote.credit, quote.currency)
            messages.success(request, f"Your service is cancelled; {amount} is added to your credit balance.")
        else:
            messages.success(request, "Your service is cancelled.")
    return redirect(page_url(request, "service", pk=sub.pk))


@require_POST
@portal_page(runs_services)
def pod_action(request, pk, action: str):
    pod = owned(selectors.pod_of(request.portal_user.customer, pk), "pod")
    if action not in acts.POD_ACTIONS:
        raise Http404("No such action.")
    try:
        acts.pod_act(pod, action)  # the portal's rules on top of the pod's (never resumes a non-payment)
    except DomainError as exc:
        show_error(request, exc)
    else:
        messages.success(request, f"{pod.name}: {action} requested.")
    return redirect(safe_next(request, page_url(request, "services")))


@require_POST
@portal_page(runs_services)
def mailbox_password(request, pk):
    box = owned(selectors.mailbox_of(request.portal_user.customer, pk), "mailbox")
    form = forms.MailboxPasswordForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
    else:
        try:
            mail_services.mailbox_update(mailbox=box, data={"password": form.cleaned_data["password"]})
        except DomainError as exc:
            show_error(request, exc)
        else:
            messages.success(request, f"The password of {box.address} is changed.")
    return redirect(page_url(request, "services"))


@require_POST
@portal_page(runs_services)
def domain_auto_renew(request, pk):
    domain = owned(selectors.domain_of(request.portal_user.customer, pk), "domain")
    try:
        domain_services.domain_update(domain=domain, data={"auto_renew": request.POST.get("auto_renew") == "on"})
    except DomainError as exc:
        show_error(request, exc)
    return redirect(page_url(request, "services"))


# --- ordering -----------------------------------------------------------------------------------


def _cart(request) -> list[dict]:
    return list((request.session.get(CART) or {}).get(str(request.portal_tenant.pk), []))


def _save_cart(request, items: list[dict]) -> None:
    carts = dict(request.session.get(CART) or {})
    carts[str(request.portal_tenant.pk)] = items[:20]
    request.session[CART] = carts


def _priced(request, items: list[dict]):
    customer = request.portal_user.customer
    country = str(customer.country or "") or None
    lines, totals = [], {"subtotal": Decimal(0), "setup": Decimal(0), "tax": Decimal(0), "total": Decimal(0)}
    for index, item in enumerate(items):
        product = Product.objects.filter(pk=item["product"], visibility=Visibility.PUBLIC).first()
        if product is None or not product.is_orderable:
            continue
        try:
            q = quote(product, item["cycle"], customer.currency, item["quantity"], country)
        except DomainError:
            continue
        lines.append({"index": index, "product": product, "item": item, "quote": q})
        totals["subtotal"] += q.recurring_subtotal
        totals["setup"] += q.setup_subtotal
        totals["tax"] += q.tax
        totals["total"] += q.total
    return lines, totals


@portal_page(sees_money)
def order_configure(request, product_pk):
    product = Product.objects.filter(pk=product_pk, visibility=Visibility.PUBLIC).first()
    if product is None or not product.is_orderable:
        raise Http404("No such product.")
    currency = request.portal_user.customer.currency
    rows = [r for r in price_table(product).rows if r.currency == currency]
    cycles = [(r.cycle, dict(Cycle.choices).get(r.cycle, r.cycle)) for r in rows]
    form = forms.CartItemForm(request.POST or None, initial={"product": product.pk})
    form.fields["cycle"].choices = cycles
    needs_domain = product.type in (ProductType.DOMAIN, ProductType.HOSTING_PLAN)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if needs_domain and not data["domain"]:
            form.add_error("domain", "Enter the domain name for this service.")
        else:
            config = {"domain": data["domain"].strip().lower()} if data["domain"] else {}
            item = {"product": str(product.pk), "cycle": data["cycle"], "quantity": data["quantity"], "config": config}
            _save_cart(request, [*_cart(request), item])
            return redirect(page_url(request, "cart"))
    return render_page(
        request, "order_configure.html", {"product": product, "rows": rows, "form": form, "needs_domain": needs_domain}
    )


@portal_page(sees_money)
def cart(request):
    items = _cart(request)
    if request.method == "POST" and request.POST.get("remove") is not None:
        index = int(request.POST["remove"]) if request.POST["remove"].isdigit() else -1
        _save_cart(request, [item for i, item in enumerate(items) if i != index])
        return redirect(page_url(request, "cart"))
    lines, totals = _priced(request, items)
    return render_page(
        request, "cart.html", {"lines": lines, "totals": totals, "currency": request.portal_user.customer.currency}
    )


@require_POST
@portal_page(sees_money)
def checkout(request):
    lines, _totals = _priced(request, _cart(request))
    if not lines:
        messages.error(request, "Your cart is empty.")
        return redirect(page_url(request, "cart"))
    customer = request.portal_user.customer
    try:
        with transaction.atomic():
            order = order_services.order_create(
                tenant=request.portal_tenant,
                customer=customer,
                items=[
                    {
                        "product": line["product"],
                        "cycle": line["item"]["cycle"],
                        "quantity": line["item"]["quantity"],
                        "config": line["item"].get("config") or {},
                    }
                    for line in lines
                ],
            )
            order = order_services.order_accept(order=order)
    except DomainError as exc:
        show_error(request, exc)
        return redirect(page_url(request, "cart"))
    _save_cart(request, [])
    if order.invoice_id and order.invoice.status in selectors.PAYABLE and order.invoice.amount_due > 0:
        return redirect(page_url(request, "invoice", pk=order.invoice_id))
    return redirect(page_url(request, "order", pk=order.pk))


@portal_page(sees_money)
def order_detail(request, pk):
    """The provisioning progress of an order's services, polled (``?poll=1``) until all are live."""
    order = owned(selectors.order_of(request.portal_user.customer, pk), "order")
    subs = [item.subscription for item in order.items.select_related("subscription", "product") if item.subscription]
    # Live means provisioned: each service active and every part it made ready, not only paid for.
    parts = {s.pk: selectors.provisioning_of(s) if s.status == SubscriptionStatus.ACTIVE else [] for s in subs}
    done = order.status == OrderStatus.COMPLETED and all(
        s.status == SubscriptionStatus.ACTIVE and all(p["status"] in selectors.READY for p in parts[s.pk]) for s in subs
    )
    if request.GET.get("poll") == "1":
        rows = []
        for s in subs:
            rows += [{"name": s.product.name, "status": s.status}, *parts[s.pk]]
        return JsonResponse({"order": order.status, "done": done, "services": rows})
    rows = [(s, parts[s.pk]) for s in subs]
    return render_page(request, "order.html", {"order": order, "subs": rows, "done": done})


@portal_page(sees_money)
def orders(request):
    return render_page(request, "orders.html", {"orders": selectors.orders_of(request.portal_user.customer)[:100]})


# --- the account ------------------------------------------------------------------------------


@portal_page()
def profile(request):
    customer = request.portal_user.customer
    fields = list(forms.ProfileForm.base_fields)
    form = forms.ProfileForm(request.POST or None, initial={f: getattr(customer, f) for f in fields})
    may_edit = request.portal_user.role in ("owner", "billing")
    if request.method == "POST":
        if not may_edit:
            return render_page(request, "forbidden.html", status=403)
        if form.is_valid():
            data = {k: (str(v) if k == "country" else v) for k, v in form.cleaned_data.items()}
            try:
                customer_services.customer_update(customer=customer, data=data)
            except DomainError as exc:
                show_error(request, exc)
            else:
                messages.success(request, "Your details are saved.")
                return redirect(page_url(request, "profile"))
    return render_page(
        request,
        "profile.html",
        {"form": form, "may_edit": may_edit, "customer": customer, "contacts": customer.contacts.all()},
    )


@portal_page(manages_users)
def users(request):
    user = request.portal_user
    form = forms.InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.portal_user_invite(
                customer=user.customer,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                name=form.cleaned_data["name"],
            )
        except (DomainError, ValidationError) as exc:
            show_error(request, exc)
        else:
            messages.success(request, f"{form.cleaned_data['email']} is invited.")
            return redirect(page_url(request, "users"))
    return render_page(
        request,
        "users.html",
        {"users": selectors.users_of(user.customer), "form": form, "roles": forms.PortalRole.choices},
    )


def _own_user(request, pk) -> PortalUser:
    other = owned(selectors.users_of(request.portal_user.customer).filter(pk=pk).first(), "user")
    return other


@require_POST
@portal_page(manages_users)
def user_role(request, pk):
    other = _own_user(request, pk)
    form = forms.RoleForm(request.POST)
    if form.is_valid():
        try:
            services.portal_user_update(user=other, data={"role": form.cleaned_data["role"]})
        except DomainError as exc:
            show_error(request, exc)
    return redirect(page_url(request, "users"))


@require_POST
@portal_page(manages_users)
def user_remove(request, pk):
    other = _own_user(request, pk)
    try:
        services.portal_user_remove(user=other)
    except DomainError as exc:
        show_error(request, exc)
    return redirect(page_url(request, "users"))


@portal_page(allow_unenrolled=True)
def security(request):
    """Password, two-factor authentication and the user's sessions and tokens."""
    user = PortalUser.objects.get(pk=request.portal_user.pk)
    password_form = forms.PasswordChangeForm(request.POST if request.POST.get("form") == "password" else None)
    code_form = forms.CodeForm(request.POST if request.POST.get("form") == "totp_confirm" else None)
    off_form = forms.PasswordOnlyForm(request.POST if request.POST.get("form") == "totp_off" else None)
    which = request.POST.get("form")
    try:
        if which == "password" and password_form.is_valid():
            services.password_change(
                user=user,
                current=password_form.cleaned_data["current_password"],
                new=password_form.cleaned_data["password"],
                keep=request.portal_session,
            )
            messages.success(request, "Your password is changed; your other sessions are ended.")
            return redirect(page_url(request, "security"))
        if which == "totp_begin":
            services.totp_begin(user=user)
            return redirect(page_url(request, "security"))
        if which == "totp_confirm" and code_form.is_valid():
            services.totp_confirm(user=user, code=code_form.cleaned_data["code"])
            messages.success(request, "Two-factor authentication is on.")
            return redirect(page_url(request, "security"))
        if which == "totp_off" and off_form.is_valid():
            services.totp_disable(user=user, password=off_form.cleaned_data["password"])
            messages.success(request, "Two-factor authentication is off.")
            return redirect(page_url(request, "security"))
    except DomainError as exc:
        show_error(request, exc)
    enrolling = bool(user.totp_secret) and not user.has_2fa
    secret_b32 = ""
    if enrolling:
        secret_b32 = base64.b32encode(bytes.fromhex(user.totp_secret)).decode().rstrip("=")
    return render_page(
        request,
        "security.html",
        {
            "user": user,
            "password_form": password_form,
            "code_form": code_form,
            "off_form": off_form,
            "enrolling": enrolling,
            "secret": secret_b32,
            "sessions": selectors.sessions_of(user),
            "current": request.portal_session,
            "required": PortalSettings.of(request.portal_tenant).require_2fa,
        },
    )


@require_POST
@portal_page(allow_unenrolled=True)
def session_revoke(request, pk):
    session = owned(PortalSession.objects.filter(user=request.portal_user, pk=pk).first(), "session")
    services.session_revoke(session=session)
    if session.pk == request.portal_session.pk:
        end_web_session(request, request.portal_tenant)
        return redirect(page_url(request, "login"))
    messages.success(request, "The session is ended.")
    return redirect(page_url(request, "security"))
