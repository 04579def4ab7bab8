from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from apps.common.admin import TenantOwnedAdmin, TenantOwnedForm

from .models import BundleItem, Price, Product, TaxRate


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
class ProductAdmin(TenantOwnedAdmin):
    form = ProductAdminForm
    audit_fields = Product.audit_fields
    list_display = ["name", "slug", "type", "visibility", "tax_class", "stock", "created_at"]
    list_filter = ["type", "visibility", "tax_class", "created_at"]
    search_fields = ["name", "slug", "description", "id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    show_full_result_count = False
    inlines = [PriceInline, BundleItemInline]


@admin.register(TaxRate)
class TaxRateAdmin(TenantOwnedAdmin):
    audit_fields = TaxRate.audit_fields
    list_display = ["name", "country", "tax_class", "rate", "created_at"]
    list_filter = ["tax_class", "country"]
    search_fields = ["name", "country", "id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    show_full_result_count = False
