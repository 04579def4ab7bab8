from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse

from apps.common.admin import ObjectAction, ServiceFormMixin, status_column
from apps.common.display import money
from apps.common.exceptions import DomainError
from apps.tenancy.admin_base import TenantOwnedAdmin, TenantOwnedForm
from apps.tenancy.scoping import tenant_scope

from . import services
from .models import BundleItem, Price, Product, TaxRate, Visibility


class TenantInlineForm(forms.ModelForm):
    """An inline row belongs to its product's tenant (also on the add page, where the product is new),
    and must not point at another tenant's rows."""

    parent_field = "product"

    def _post_clean(self):
        parent = getattr(self.instance, self.parent_field, None)
        if parent is not None and self.instance.tenant_id is None:
            self.instance.tenant_id = parent.tenant_id
        super()._post_clean()
        if self.instance.tenant_id is None:
            return
        try:
            self.instance.check_tenant_links()
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)


class PriceForm(TenantInlineForm):
    parent_field = "product"


class BundleItemForm(TenantInlineForm):
    parent_field = "bundle"


class TenantInlineFormSet(forms.BaseInlineFormSet):
    def save_new(self, form, commit=True):
        form.instance.tenant_id = self.instance.tenant_id
        return super().save_new(form, commit)


class PriceInline(admin.TabularInline):
    model = Price
    form = PriceForm
    formset = TenantInlineFormSet
    fk_name = "product"
    extra = 0
    fields = ["currency", "cycle", "amount", "setup_fee"]


class BundleItemInline(admin.TabularInline):
    model = BundleItem
    form = BundleItemForm
    formset = TenantInlineFormSet
    fk_name = "bundle"
    extra = 0
    fields = ["component", "quantity"]
    autocomplete_fields = ["component"]
    verbose_name = "bundle component"


class ProductAdminForm(TenantOwnedForm):
    class Meta:
        model = Product
        fields = ["tenant", *Product.audit_fields]


@admin.register(Product)
class ProductAdmin(ServiceFormMixin, TenantOwnedAdmin):
    """Products with their prices per currency and cycle and (for a bundle) their components, saved
    all or nothing by ``services.product_create/product_update`` as the API does (one audited
    ``product.create|update`` event naming the prices and components)."""

    form = ProductAdminForm
    audit_fields = Product.audit_fields
    list_display = ["name", "slug", "type", "visibility_badge", "prices", "tax_class", "stock", "created_at"]
    list_filter = ["type", "visibility", "tax_class", "created_at"]
    search_fields = ["name", "slug", "description", "id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    show_full_result_count = False
    inlines = [PriceInline, BundleItemInline]
    object_actions = [
        ObjectAction(
            "retire",
            "Retire",
            method="retire_one",
            confirm=True,
            style="danger",
            show=lambda p: p.visibility != Visibility.RETIRED,
            help="No longer sold; running subscriptions keep it and renew at their price.",
        ),
    ]
    visibility_badge = status_column("visibility", "Visibility")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("prices")

    @admin.display(description="Prices")
    def prices(self, obj):
        return ", ".join(f"{money(p.amount, p.currency)} {p.cycle}" for p in obj.prices.all()) or "—"

    def object_action_scope(self, obj):
        return tenant_scope(obj.tenant)

    def service_save(self, request, form, formsets, change):
        data = {name: form.cleaned_data[name] for name in Product.audit_fields if name in form.cleaned_data}
        for formset in formsets:
            rows = [f.cleaned_data for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
            if formset.model is Price:
                data["prices"] = [
                    {
                        "currency": r["currency"],
                        "cycle": r["cycle"],
                        "amount": r["amount"],
                        "setup_fee": r.get("setup_fee") or Decimal(0),
                    }
                    for r in rows
                ]
            elif formset.model is BundleItem:
                data["bundle_items"] = [{"product": r["component"].pk, "quantity": r["quantity"]} for r in rows]
        if change:
            product = Product.all_tenants.get(pk=form.instance.pk)
            with tenant_scope(product.tenant):
                return services.product_update(product=product, data=data)
        tenant = form.cleaned_data["tenant"]
        with tenant_scope(tenant):
            return services.product_create(tenant=tenant, data=data)

    # Django's delete (page and list action) is ``services.product_delete``: a product that was sold
    # is retired rather than deleted, as the API does; the confirmation page says which.

    def get_deleted_objects(self, objs, request):
        objs = list(objs)
        kept = [p for p in objs if services.product_sold(p) or p.in_bundles.exists()]
        gone = [p for p in objs if p not in kept]
        deleted, counts, perms_needed, protected = (
            super().get_deleted_objects(gone, request) if gone else ([], {}, set(), [])
        )
        notes = [f"{p.name}: sold or bundled, so it is retired rather than deleted" for p in kept]
        return [*deleted, *notes], counts, perms_needed, protected

    def delete_model(self, request, obj):
        try:
            with tenant_scope(obj.tenant):
                kept = services.product_delete(product=obj)
        except DomainError as exc:
            self.message_user(request, f"{obj.name}: {exc.message}", messages.ERROR)
            request.product_kept = True
            return
        if kept is not None:
            self.message_user(request, f"{obj.name} was sold: it is retired, not deleted.", messages.WARNING)
            request.product_kept = True

    def response_delete(self, request, obj_display, obj_id):
        if getattr(request, "product_kept", False):  # not "deleted successfully": it is still there
            return HttpResponseRedirect(reverse("admin:catalog_product_change", args=[obj_id]))
        return super().response_delete(request, obj_display, obj_id)

    def retire_one(self, request, product, data):
        services.product_retire(product=product)
        return f"{product.name} is retired."


@admin.register(TaxRate)
class TaxRateAdmin(TenantOwnedAdmin):
    audit_fields = TaxRate.audit_fields
    list_display = ["name", "country", "tax_class", "rate", "created_at"]
    list_filter = ["tax_class", "country"]
    search_fields = ["name", "country", "id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    show_full_result_count = False
