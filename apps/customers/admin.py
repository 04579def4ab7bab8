from django import forms
from django.apps import apps
from django.contrib import admin

from apps.common.admin import AuditedGuardedAdminMixin, TenantOwnedAdmin, TenantOwnedForm, related_rows
from apps.common.money import CURRENCY_CHOICES

from . import services
from .models import Contact, Customer


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


@admin.register(Customer)
class CustomerAdmin(AuditedGuardedAdminMixin, TenantOwnedAdmin):
    form = CustomerAdminForm
    audit_fields = Customer.audit_fields
    list_display = ["name", "company", "email", "status", "currency", "country", "created_at"]
    list_filter = ["status", "kind", "currency", "created_at"]
    search_fields = ["name", "company", "email", "billing_email", "tax_id", "id"]
    readonly_fields = ["id", "created_at", "updated_at", "subscriptions", "invoices"]
    show_full_result_count = False
    inlines = [ContactInline]

    @admin.display(description="Subscriptions (latest first)")
    def subscriptions(self, obj):
        if obj.pk is None:
            return "—"
        return related_rows(apps.get_model("billing", "Subscription"), filters={"customer__id__exact": obj.pk},
                            columns=[("Product", "product"), ("Quantity", "quantity"), ("Status", "status"),
                                     ("Billed through", "billed_through")], select=("product",),
                            title="subscriptions of this customer")  # fmt: skip

    @admin.display(description="Invoices (latest first)")
    def invoices(self, obj):
        if obj.pk is None:
            return "—"
        return related_rows(apps.get_model("billing", "Invoice"), filters={"customer__id__exact": obj.pk},
                            columns=[("Invoice", "__str__"), ("Status", "status"), ("Total", "total"),
                                     ("Currency", "currency"), ("Due", "due_date")],
                            title="invoices of this customer")  # fmt: skip

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
class ContactAdmin(TenantOwnedAdmin):
    audit_fields = Contact.audit_fields
    list_display = ["name", "email", "role", "customer", "created_at"]
    list_filter = ["role", "created_at"]
    search_fields = ["name", "email", "customer__name", "customer__email"]
    list_select_related = ["customer"]
    autocomplete_fields = ["customer"]
    readonly_fields = ["id", "created_at", "updated_at"]
