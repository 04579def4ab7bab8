from django.contrib import admin

from apps.common.admin import ReadOnlyAdmin

from .models import NameDelegation


@admin.register(NameDelegation)
class NameDelegationAdmin(ReadOnlyAdmin):
    """Delegations change through the API's services (the holder's checks, the audit): read-only here."""

    list_display = ["name", "tenant", "grantee", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["name", "id"]
    list_select_related = ["tenant", "grantee"]
