from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views import defaults as django_defaults
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .throttling import DynamicScopedRateThrottle


class DebugView(APIView):
    """Liveness: answers without touching anything else."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [DynamicScopedRateThrottle]
    throttle_scope = "public"

    @extend_schema(
        responses=inline_serializer(
            "Debug", {"status": serializers.CharField(), "timestamp": serializers.DateTimeField()}
        ),
        summary="Liveness probe",
    )
    def get(self, request):
        return Response({"status": "ok", "timestamp": timezone.now().isoformat()})


class HealthView(APIView):
    """Readiness: the database answers and, when configured, Redis answers."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [DynamicScopedRateThrottle]
    throttle_scope = "public"

    @extend_schema(
        responses={
            200: inline_serializer("Health", {"status": serializers.CharField(), "checks": serializers.DictField()}),
            503: inline_serializer(
                "HealthFailed", {"status": serializers.CharField(), "checks": serializers.DictField()}
            ),
        },
        summary="Readiness probe (database, Redis)",
    )
    def get(self, request):
        checks: dict[str, str] = {}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # a health check reports failures instead of raising them
            checks["database"] = f"error: {type(exc).__name__}"
        if settings.REDIS_URL:
            try:
                import redis

                redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
                checks["redis"] = "ok"
            except Exception as exc:
                checks["redis"] = f"error: {type(exc).__name__}"
        healthy = all(v == "ok" for v in checks.values())
        return Response(
            {"status": "ok" if healthy else "error", "checks": checks},
            status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE,
        )


# --- error pages: JSON under /api/, Django's HTML pages elsewhere (mpanel/urls.py handler404/500) ---


def _wants_json(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    """A URL that matches no route (e.g. an id that is not a UUID) answers like any API 404."""
    if _wants_json(request):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return django_defaults.page_not_found(request, exception)


def server_error(request):
    """An unexpected error: a JSON body under /api/ (the details stay in the log)."""
    if _wants_json(request):
        return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)
    return django_defaults.server_error(request)
