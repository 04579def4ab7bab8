"""The brand's logo, public: customers' portals, e-mails and the public catalog show it to anyone.

Served from the default storage with the type recorded when it was validated, ``nosniff``, and a
policy under which even an SVG opened on its own can run nothing. Its URL carries the file's hash
(``?v=``), so it is cached for a long time.
"""

from __future__ import annotations

from django.http import FileResponse, Http404
from django.views.decorators.http import require_GET

from .models import Brand
from .selectors import storage


@require_GET
def logo(request, brand_id: str, extension: str):
    brand = Brand.all_tenants.filter(pk=brand_id).exclude(logo="").first()
    if brand is None or not brand.logo.endswith("." + extension):
        raise Http404("No such logo.")
    try:
        handle = storage().open(brand.logo, "rb")
    except OSError as exc:
        raise Http404("No such logo.") from exc
    response = FileResponse(handle, content_type=brand.logo_content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response["Cache-Control"] = "public, max-age=86400"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"  # shown in e-mails and other sites' storefronts
    return response
