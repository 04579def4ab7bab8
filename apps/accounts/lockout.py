from django.conf import settings
from django.http import HttpResponse, JsonResponse


def lockout_response(request, original_response, credentials):
    """django-axes' lockout answer: JSON with Retry-After for the API, plain text elsewhere."""
    retry_after = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    if original_response is not None and original_response.status_code == 429:
        original_response.setdefault("Retry-After", retry_after)
        return original_response
    if request.path.startswith("/api/"):
        response = JsonResponse(
            {"detail": "Too many failed login attempts. Try again later.", "code": "locked_out"}, status=429
        )
    else:
        response = HttpResponse(
            "Too many failed login attempts. Try again later.", status=429, content_type="text/plain"
        )
    response["Retry-After"] = retry_after
    return response
