"""The admin base of pages that place an object on a node: the node choice offers the nodes of the
page's tenant that have the role (``node_role``), active ones only where placement needs it."""

from __future__ import annotations

from .models import Node, NodeStatus, with_role


class NodeChoiceMixin:
    """Narrows the form's ``node`` field: ``node_role``'s nodes (``node_active_only``: active ones),
    of the object's tenant or the one the add page is for (``chosen_tenant_id``, every tenant's
    until one is chosen). ``node_automatic``: the empty choice's label when the service may place
    the object itself (the field is then optional)."""

    node_role: str = ""
    node_active_only: bool = False
    node_automatic: str = ""

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        field = form.base_fields.get("node")
        if field is not None:
            nodes = Node.all_tenants.filter(with_role(self.node_role)).select_related("tenant")
            if self.node_active_only:
                nodes = nodes.filter(status=NodeStatus.ACTIVE)
            tenant_id = self.chosen_tenant_id(request, obj)
            field.queryset = nodes.filter(tenant_id=tenant_id) if tenant_id is not None else nodes
            if self.node_automatic:
                field.required = False
                field.empty_label = self.node_automatic
        return form
