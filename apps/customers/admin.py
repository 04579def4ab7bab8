from django.contrib import admin
from guardian.admin import GuardedModelAdminMixin

from apps.common.admin import TenantOwnedAdmin

from .models import Contact, Customer
from .services import CUSTOMER_FIELDS


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0
    fields = ["name", "email", "phone", "role"]

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        parent = obj

        class TenantFormSet(formset):
            def save_new(self, form, commit=True):
                form.instance.tenant_id = parent.tenant_id
                return super().save_new(form, commit)

        return TenantFormSet


@admin.register(Customer)
class CustomerAdmin(GuardedModelAdminMixin, TenantOwnedAdmin):
    audit_fields = CUSTOMER_FIELDS
    list_display = ["name", "company", "email", "status", "currency", "country", "created_at"]
    list_filter = ["status", "kind", "currency", "created_at"]
    search_fields = ["name", "company", "email", "billing_email", "tax_id", "id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    show_full_result_count = False
    inlines = [ContactInline]


@admin.register(Contact)
class ContactAdmin(TenantOwnedAdmin):
    list_display = ["name", "email", "role", "customer"]
    list_filter = ["role"]
    search_fields = ["name", "email", "customer__name"]
    list_select_related = ["customer"]
    autocomplete_fields = ["customer"]
