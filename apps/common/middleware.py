import re
import uuid

from django_scopes import scopes_disabled

from . import context

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestContextMiddleware:
    """Gives every request an id (echoed as X-Request-ID) and records the client address."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        ctx = context.RequestContext(
            request_id=request_id,
            ip=context.client_ip_from_request(request),
            user_agent=request.headers.get("User-Agent", "")[:255],
            via="admin" if request.path.startswith("/admin/") else "api",
        )
        request.request_id = request_id
        token = context.activate(ctx)
        try:
            response = self.get_response(request)
        finally:
            context.reset(token)
        response["X-Request-ID"] = request_id
        return response


class OperatorScopeMiddleware:
    """The Django admin is the operators' console: it sees every tenant, explicitly.

    Only staff reach admin views (the admin checks that itself); everything else keeps the
    fail-closed default, where a tenant query without a tenant in scope raises.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/admin/"):
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                context.current().actor = user
            with scopes_disabled():
                return self.get_response(request)
        return self.get_response(request)
