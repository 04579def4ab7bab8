from django.contrib import admin

from apps.common.admin import ReadOnlyAdmin, ReadOnlyInline

from .models import Order, OrderItem


class OrderItemInline(ReadOnlyInline):
    model = OrderItem
    fields = readonly_fields = ["product", "cycle", "quantity", "unit_price", "setup_fee", "total", "subscription"]


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "customer", "status", "total", "currency", "invoice", "created_at", "tenant"]
    list_filter = ["status", "currency", "tenant"]
    search_fields = ["customer__name", "customer__email", "id"]
    list_select_related = ["customer", "invoice", "tenant"]
    show_full_result_count = False
    inlines = [OrderItemInline]
