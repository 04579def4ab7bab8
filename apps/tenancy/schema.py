"""The settings' ``DEFAULT_SCHEMA_CLASS``: the ground floor's AutoSchema (``apps.common.schema``), which
tells apart the operations that act in a tenant, so they document the ``X-Tenant-ID`` header."""

from __future__ import annotations

from apps.common.schema import AutoSchema as CommonAutoSchema

from .viewsets import TenantScopedViewSet


class AutoSchema(CommonAutoSchema):
    def _is_tenant_scoped(self) -> bool:
        return isinstance(self.view, TenantScopedViewSet)
