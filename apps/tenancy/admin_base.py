"""Admin bases for tenant-owned rows: the tenant is shown, filtered on, chosen once, and a row that
points at another tenant's rows is a form error."""

from django import forms
from django.core.exceptions import ValidationError

from apps.audit.admin_base import AuditedModelAdmin


class TenantOwnedForm(forms.ModelForm):
    """Rejects, as a form error, a row that points at another tenant's rows.

    ``TenantOwnedModel.save`` refuses such a row too, but by raising, which the admin would
    turn into a server error. The tenant also takes part in the model's unique constraints
    when it is read-only on the page (it is, once the row exists).
    """

    def _get_validation_exclusions(self):
        exclude = super()._get_validation_exclusions()
        if "tenant" not in self.fields and self.instance.tenant_id is not None:
            exclude.discard("tenant")
        return exclude

    def _post_clean(self):
        super()._post_clean()
        if self.instance.tenant_id is None:
            return  # "tenant" is required: the form already says so
        try:
            self.instance.check_tenant_links()
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)


class TenantOwnedAdmin(AuditedModelAdmin):
    """Shows and filters by tenant; the tenant is chosen once, at creation."""

    form = TenantOwnedForm

    def get_list_display(self, request):
        fields = list(super().get_list_display(request))
        return fields if "tenant" in fields else [*fields, "tenant"]

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        return filters if "tenant" in filters else [*filters, "tenant"]

    def get_list_select_related(self, request):
        related = self.list_select_related
        if related is True:
            return True
        return [*(related or []), "tenant"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "tenant"] if obj is not None and "tenant" not in fields else fields
