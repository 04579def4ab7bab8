"""Name delegations: the holder of a name lets another tenant take a tree under it. Audited."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.tenancy.models import Tenant

from . import claims
from .models import NameDelegation


@transaction.atomic
def delegation_create(*, tenant, name: str, grantee, actor=None) -> NameDelegation:
    """Only a tree the tenant holds (the name itself or a name above it) can be delegated, and
    never to the tenant itself."""
    name = claims.check_shape(name)
    grantee_id = getattr(grantee, "pk", grantee)
    if grantee_id == tenant.pk:
        raise InvalidInput("A tenant does not need a delegation of its own names.", field="grantee")
    if not Tenant.objects.filter(pk=grantee_id).exists():
        raise InvalidInput("No such tenant.", field="grantee")
    claims.lock([name])
    if not any(claims.within(name, held) for _kind, held in claims.held_by(tenant.pk, name)):
        raise InvalidInput(f"This tenant holds neither {name} nor a name above it.", field="name")
    delegation = NameDelegation(tenant=tenant, name=name, grantee_id=grantee_id)
    try:
        with transaction.atomic():
            delegation.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("This tree is delegated to this tenant already.", field="name") from exc
    audit.created(delegation, "names.delegation.create", actor=actor)
    return delegation


@transaction.atomic
def delegation_delete(*, delegation: NameDelegation, actor=None) -> None:
    """Refused while the grantee holds a name in the tree: taking the grant back would leave two
    tenants holding one tree. The grantee releases its names first (or the operator steps in)."""
    claims.lock([delegation.name])
    if claims.held_by(delegation.grantee_id, delegation.name, under_only=True):
        raise Conflict("The grantee still holds names in this tree; they must be removed first.",
                       code="delegation_in_use")  # fmt: skip
    audit.deleted(delegation, "names.delegation.delete", actor=actor)
    delegation.delete()
