"""One permission class for every tenant API: a per-action role map, fail-closed."""

from __future__ import annotations

from dataclasses import dataclass

from guardian.core import ObjectPermissionChecker
from rest_framework import exceptions, permissions

from .roles import Role


@dataclass(frozen=True)
class Grant:
    """An action open to ``role`` and above, or to anyone holding ``perm`` on the object (guardian)."""

    role: Role
    perm: str


def holds_grant(user, perm: str, obj) -> bool:
    """The grant given on this object to the user or one of the user's groups. Not ``user.has_perm``:
    Django (and guardian's checker) answer yes to every superuser, and a superuser's platform reach
    comes only through the operator view, which needs a second factor (apps/accounts/operators.py)."""
    codename = perm.split(".", 1)[-1]
    checker = ObjectPermissionChecker(user)
    return codename in checker.get_user_perms(obj) or codename in checker.get_group_perms(obj)


def required_for(view, request):
    action = getattr(view, "action", None) or request.method.lower()
    return view.required_roles.get(action)


class HasTenantRole(permissions.BasePermission):
    """Reads ``view.required_roles``; an action missing from the map is denied."""

    message = "Your role in this tenant does not allow this action."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        required = required_for(view, request)
        if required is None:
            return False
        if getattr(request, "operator", False):
            # Platform-wide, operators may do only what the view opens to them (reads by default).
            if (getattr(view, "action", None) or request.method.lower()) in view.operator_actions:
                return True
            raise exceptions.PermissionDenied("Name the tenant to act in (X-Tenant-ID).")
        role = getattr(request, "tenant_role", None)
        if getattr(request, "tenant", None) is None or role is None:
            raise exceptions.PermissionDenied("Select a tenant you belong to (X-Tenant-ID).")
        if isinstance(required, Grant):
            # Decided per object: the role, or a guardian grant on that object.
            return True
        if Role(role).includes(required):
            return True
        # Too low a role. Someone else's object is still a 404, never a 403 (docs/api.md).
        view.ensure_visible()
        return False

    def has_object_permission(self, request, view, obj) -> bool:
        required = required_for(view, request)
        if getattr(request, "operator", False):
            return True
        if isinstance(required, Grant):
            if Role(request.tenant_role).includes(required.role):
                return True
            return holds_grant(request.user, required.perm, obj)
        return True
