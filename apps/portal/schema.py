from drf_spectacular.extensions import OpenApiAuthenticationExtension


class PortalTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.portal.auth.PortalTokenAuthentication"
    name = "portalToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A customer's portal token (mpc_…) from POST /api/v1/portal/login/; never a staff key.",
        }
