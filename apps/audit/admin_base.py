"""Admin bases that write audit events: every save, delete, inline row and object-permission grant
made through the admin is recorded like a service's change (``<model>.create|update|delete``)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from guardian.admin import GuardedModelAdminMixin
from guardian.shortcuts import get_group_perms, get_user_perms

from apps.common.admin import ConsoleModelAdmin

from . import services as audit


def audit_tenant(obj):
    """The tenant an event about ``obj`` belongs to: a tenant's own events belong to it."""
    return audit.tenant_of(obj)


def _m2m_names(model, fields, form) -> list[str]:
    return [
        f.name for f in model._meta.many_to_many if f.name in form.cleaned_data and (fields is None or f.name in fields)
    ]


def _related_labels(objs) -> list[str]:
    return sorted(str(o) for o in objs)


class AuditedModelAdmin(ConsoleModelAdmin):
    """Writes ``<model>.create|update|delete`` events, including for rows saved by inlines.

    ``audit_fields`` limits what is recorded (default: every concrete field; secrets are never
    recorded, see ``audit.snapshot``). Many-to-many fields edited on the form are recorded too.
    """

    # Not the model's declaration: an operator may edit any field on the form, so all are recorded.
    audit_fields: list[str] | None = None

    def _fields(self) -> list[str] | str:
        return self.audit_fields if self.audit_fields is not None else audit.ALL_FIELDS

    def _snapshot(self, obj, form=None, *, old=False) -> dict:
        data = audit.snapshot(obj, self._fields())
        if form is not None and hasattr(form, "cleaned_data"):
            for name in _m2m_names(type(obj), self.audit_fields, form):
                if old:
                    data[name] = _related_labels(getattr(obj, name).all()) if obj.pk else []
                else:
                    data[name] = _related_labels(form.cleaned_data[name] or [])
        return data

    def save_model(self, request, obj, form, change):
        before = None
        if change and obj.pk:
            old = type(obj)._base_manager.filter(pk=obj.pk).first()
            before = self._snapshot(old, form, old=True) if old else None
        super().save_model(request, obj, form, change)
        after = self._snapshot(obj, form)
        if change and not audit.diff(before, after):
            return  # nothing of the row itself changed (inlines write their own events)
        audit.record(
            action=f"{obj._meta.model_name}.{'update' if change else 'create'}",
            obj=obj,
            tenant=audit_tenant(obj),
            actor=request.user,
            before=before,
            after=after,
        )

    def delete_model(self, request, obj):
        self._record_delete(request, obj, audit.snapshot(obj, self._fields()))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self._record_delete(request, obj, audit.snapshot(obj, self._fields()))
        super().delete_queryset(request, queryset)

    def _record_delete(self, request, obj, before: dict) -> None:
        audit.record(
            action=f"{obj._meta.model_name}.delete",
            obj=obj,
            tenant=audit_tenant(obj),
            actor=request.user,
            before=before,
        )

    def save_formset(self, request, form, formset, change):
        """Inline rows: the same create/update/delete events as rows saved on their own page.

        Only the fields the inline edits are recorded.
        """
        model = formset.model
        fields = list(formset.form.base_fields)
        before = {}
        for inline_form in formset.initial_forms:
            pk = inline_form.instance.pk
            if pk is not None and (inline_form.has_changed() or inline_form in formset.deleted_forms):
                old = model._base_manager.filter(pk=pk).first()
                if old is not None:
                    before[pk] = audit.snapshot(old, fields)
        # Deletions first: once saved, the deleted rows (and their primary keys) are gone.
        for inline_form in formset.deleted_forms:
            obj = inline_form.instance
            if obj.pk in before:
                self._record_delete(request, obj, before[obj.pk])
        formset.save()
        for obj in formset.new_objects:
            audit.record(
                action=f"{model._meta.model_name}.create",
                obj=obj,
                tenant=audit_tenant(obj),
                actor=request.user,
                after=audit.snapshot(obj, fields),
            )
        for obj, _changed in formset.changed_objects:
            audit.record(
                action=f"{model._meta.model_name}.update",
                obj=obj,
                tenant=audit_tenant(obj),
                actor=request.user,
                before=before.get(obj.pk),
                after=audit.snapshot(obj, fields),
            )


class AuditedGuardedAdminMixin(GuardedModelAdminMixin):
    """django-guardian's object-permission pages, with each grant or removal audited."""

    def obj_perms_manage_user_view(self, request, object_pk, user_id):
        return self._audited_obj_perms(
            request, object_pk, get_user_model(), user_id, super().obj_perms_manage_user_view, get_user_perms
        )

    def obj_perms_manage_group_view(self, request, object_pk, group_id):
        return self._audited_obj_perms(
            request, object_pk, Group, group_id, super().obj_perms_manage_group_view, get_group_perms
        )

    def _audited_obj_perms(self, request, object_pk, holder_model, holder_id, view, perms_of):
        if request.method != "POST":
            return view(request, object_pk, holder_id)
        with transaction.atomic():
            try:
                obj = self.get_queryset(request).filter(pk=object_pk).first()
                holder = holder_model._default_manager.filter(pk=holder_id).first()
            except (ValueError, ValidationError):
                obj = holder = None
            before = sorted(perms_of(holder, obj)) if obj is not None and holder is not None else None
            response = view(request, object_pk, holder_id)
            if before is not None and response.status_code == 302:
                after = sorted(perms_of(holder, obj))
                if after != before:
                    kind = "user" if holder_model is not Group else "group"
                    audit.record(
                        action=f"{obj._meta.model_name}.permissions_change",
                        obj=obj,
                        tenant=audit_tenant(obj),
                        actor=request.user,
                        changes={f"{kind}:{holder}": [before, after]},
                    )
        return response
