from django.contrib import admin

from apps.common.admin import ReadOnlyAdmin

from .models import Domain


@admin.register(Domain)
class DomainAdmin(ReadOnlyAdmin):
    """Domains change through their services (registrar driver, verification, billing): read-only here."""

    list_display = ["name", "status", "customer", "registrar", "registrar_state", "expires_at", "auto_renew",
                    "verified_at", "tenant"]  # fmt: skip
    list_filter = ["status", "registrar", "registrar_state", "auto_renew", "tenant"]
    search_fields = ["name", "id"]
    list_select_related = ["customer", "tenant"]
    date_hierarchy = "expires_at"
    show_full_result_count = False
