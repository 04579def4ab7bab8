from django import forms
from django.contrib import admin
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import reverse

from apps.audit.admin_base import AuditedGuardedAdminMixin
from apps.common.admin import ObjectAction, ServiceFormMixin
from apps.common.display import badge, money, when
from apps.common.money import CURRENCY_CHOICES
from apps.tenancy.admin_base import TenantOwnedAdmin, TenantOwnedForm
from apps.tenancy.scoping import tenant_scope

from . import services
from .models import Contact, Customer
from .selectors import customer_summary


class ContactFormSet(forms.BaseInlineFormSet):
    """A contact belongs to its customer's tenant, also on the add page, where the customer is new."""

    def save_new(self, form, commit=True):
        form.instance.tenant_id = self.instance.tenant_id
        return super().save_new(form, commit)


class ContactInline(admin.TabularInline):
    model = Contact
    formset = ContactFormSet
    extra = 0
    fields = ["name", "email", "phone", "role"]


class CustomerAdminForm(TenantOwnedForm):
    """The rules of ``services.customer_create/update``: a known currency (the tenant's by default),
    the email normalised and unique in the tenant, a name that is not blank."""

    currency = forms.ChoiceField(
        choices=[("", "The tenant's default currency"), *((c, c) for c in CURRENCY_CHOICES)], required=False
    )

    class Meta:
        model = Customer
        fields = ["tenant", *Customer.audit_fields]

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("This field may not be blank.")
        return name

    def clean_email(self):
        return self.cleaned_data["email"].strip().lower()

    def clean(self):
        cleaned = super().clean()
        tenant = cleaned.get("tenant") if "tenant" in self.fields else self.instance.tenant
        if tenant is None:
            return cleaned
        if not cleaned.get("currency"):
            cleaned["currency"] = tenant.default_currency
        email = cleaned.get("email")
        if (
            email
            and Customer.all_tenants.filter(tenant=tenant, email__iexact=email).exclude(pk=self.instance.pk).exists()
        ):
            self.add_error("email", "A customer with this email exists already in this tenant.")
        return cleaned


CONTACT_FIELDS = ["name", "email", "phone", "role"]


def edited(form, names, *, every: bool = False) -> dict:
    """The form's values of ``names``: the ones the operator changed (an update), or all (a create)."""
    cleaned = form.cleaned_data
    return {name: cleaned[name] for name in names if name in cleaned and (every or name in form.changed_data)}


def save_contacts(formsets, customer: Customer) -> None:
    """The contacts inline's rows, each through its service (in the customer's tenant scope)."""
    for formset in formsets:
        if formset.model is not Contact:
            continue
        for form in formset.forms:
            cleaned = getattr(form, "cleaned_data", None) or {}
            contact = None if form.instance._state.adding else form.instance  # a UUID pk is set before saving
            if contact is not None and cleaned.get("DELETE"):
                services.contact_delete(contact=Contact.objects.get(pk=contact.pk))
            elif contact is not None and form.has_changed():
                services.contact_update(contact=Contact.objects.get(pk=contact.pk), data=edited(form, CONTACT_FIELDS))
            elif contact is None and form.has_changed() and not cleaned.get("DELETE"):
                services.contact_create(customer=customer, data=edited(form, CONTACT_FIELDS, every=True))


@admin.register(Customer)
class CustomerAdmin(ServiceFormMixin, AuditedGuardedAdminMixin, TenantOwnedAdmin):
    """Customers and their contacts (the inline) are written by ``apps.customers.services``, as from
    the API: the page's save is ``customer_create/update`` and one contact service call per row."""

    form = CustomerAdminForm
    audit_fields = Customer.audit_fields
    list_display = ["name", "company", "email", "status", "currency", "country", "created_at"]
    list_filter = ["status", "kind", "currency", "created_at"]
    search_fields = ["name", "company", "email", "billing_email", "tax_id", "id"]
    readonly_fields = ["id", "created_at", "updated_at", "summary"]
    show_full_result_count = False
    inlines = [ContactInline]
    object_actions = [
        ObjectAction(
            "create_invoice",
            "Create an invoice",
            method="create_invoice",
            http_method="get",
            permission="billing.add_invoice",
        ),
        ObjectAction(
            "add_subscription",
            "Add a service",
            method="add_subscription",
            http_method="get",
            permission="billing.add_subscription",
        ),
        ObjectAction(
            "place_order", "Place an order", method="place_order", http_method="get", permission="orders.add_order"
        ),
    ]

    @admin.display(description="Summary")
    def summary(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        return render_to_string("admin/customers/customer/summary.html", summary_context(customer_summary(obj)))

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        rest = [f for f in fieldsets[0][1]["fields"] if f != "summary"]
        return [("Summary", {"fields": ["summary"], "classes": ["customer-home"]}), ("Details", {"fields": rest})]

    # The operator's next step for this customer: the add pages, prefilled with the customer.
    def _add(self, model: str, customer) -> HttpResponseRedirect:
        return HttpResponseRedirect(f"{reverse(f'admin:{model}_add')}?customer={customer.pk}")

    def create_invoice(self, request, customer, data):
        return self._add("billing_invoice", customer)

    def add_subscription(self, request, customer, data):
        return self._add("billing_subscription", customer)

    def place_order(self, request, customer, data):
        return self._add("orders_order", customer)

    def service_save(self, request, form, formsets, change):
        tenant = form.instance.tenant if change else form.cleaned_data["tenant"]
        with tenant_scope(tenant):
            if change:
                customer = Customer.objects.get(pk=form.instance.pk)
                data = edited(form, Customer.audit_fields)
                customer = services.customer_update(customer=customer, data=data) if data else customer
            else:
                customer = services.customer_create(tenant=tenant, data=edited(form, Customer.audit_fields, every=True))
            save_contacts(formsets, customer)
        return customer

    def delete_model(self, request, obj):
        with tenant_scope(obj.tenant):
            services.customer_delete(customer=Customer.objects.get(pk=obj.pk))

    def get_deleted_objects(self, objs, request):
        """The delete guards of ``services.customer_delete`` apply here too: a guarded customer is
        listed as protected, and the admin then refuses to delete it (page and bulk action)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        protected = list(protected)
        for customer in objs:
            for check in services.DELETE_GUARDS:
                reason = check(customer)
                if reason:
                    protected.append(f"{customer}: {reason}. Close it instead.")
        return deleted, counts, perms_needed, protected


@admin.register(Contact)
class ContactAdmin(ServiceFormMixin, TenantOwnedAdmin):
    """Contacts are written by ``apps.customers.services`` (in their customer's tenant scope)."""

    audit_fields = Contact.audit_fields
    list_display = ["name", "email", "role", "customer", "created_at"]
    list_filter = ["role", "created_at"]
    search_fields = ["name", "email", "customer__name", "customer__email"]
    list_select_related = ["customer"]
    autocomplete_fields = ["customer"]
    readonly_fields = ["id", "created_at", "updated_at"]

    def service_save(self, request, form, formsets, change):
        customer = form.cleaned_data.get("customer") or form.instance.customer
        with tenant_scope(form.instance.tenant if change else customer.tenant):
            if not change:
                return services.contact_create(customer=customer, data=edited(form, CONTACT_FIELDS, every=True))
            contact, data = Contact.objects.get(pk=form.instance.pk), edited(form, Contact.audit_fields)
            return services.contact_update(contact=contact, data=data) if data else contact

    def delete_model(self, request, obj):
        with tenant_scope(obj.tenant):
            services.contact_delete(contact=Contact.objects.get(pk=obj.pk))


def _url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def _label(row) -> str:
    product = getattr(row, "product", None)
    if product is not None:  # a subscription: its product, not its id
        return f"{product.name} x{row.quantity}" if row.quantity != 1 else product.name
    return getattr(row, "name", None) or getattr(row, "primary_domain", None) or str(row)


def summary_context(summary: dict) -> dict:
    """The summary's figures as people read them (money, badges, times, names, links)."""

    def amounts(by_currency: dict) -> list[str]:
        return [money(amount, currency) for currency, amount in sorted(by_currency.items())]

    sections = []
    for section in summary["sections"]:
        opts = section.model._meta
        everything = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        sections.append(
            {
                "title": section.title,
                "count": section.count,
                "all_url": f"{everything}?{section.filter_query}" if section.filter_query else everything,
                "by_status": [(badge(status), n) for status, n in sorted(section.by_status.items())],
                "links": [
                    {"url": _url(row), "label": _label(row), "badge": badge(getattr(row, "status", ""))}
                    for row in section.rows
                ],
            }
        )
    invoices = [
        {
            "url": _url(inv),
            "label": str(inv),
            "badge": badge(inv.status),
            "total": money(inv.total, inv.currency),
            "due": money(inv.amount_due, inv.currency),
            "due_date": when(inv.due_date),
        }
        for inv in summary.get("invoices", [])
    ]
    activity = [
        {
            "when": when(e.created_at),
            "action": e.action,
            "object_repr": e.object_repr,
            "who": e.actor_email or "the platform",
        }
        for e in summary["activity"]
    ]
    changelist = reverse("admin:billing_invoice_changelist") if "invoice_filter" in summary else ""
    return {
        "owed": amounts(summary.get("owed", {})),
        "paid": amounts(summary.get("paid", {})),
        "credit": amounts(summary.get("credit", {})),
        "invoice_counts": [(badge(status), n) for status, n in sorted(summary.get("invoice_counts", {}).items())],
        "sections": sections,
        "invoices": invoices,
        "activity": activity,
        "invoices_url": f"{changelist}?{summary.get('invoice_filter', '')}",
        "cards": [
            {"label": str(c), "expiry": c.expiry or "—", "default": c.is_default, "added": when(c.created_at)}
            for c in summary.get("cards", [])
        ],
    }
