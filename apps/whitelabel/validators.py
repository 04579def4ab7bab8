"""The brand's input rules: colours readable as text (WCAG 2.x contrast), logos that are images.

Colours. The primary colour is drawn as text on white (links, headings) and under white text
(buttons, the e-mail header): it must reach the WCAG 2.x AA ratio for normal text, 4.5:1, against
white, or it is refused (400) with the ratio it reached. The accent colour is a background (badges,
highlights) whose text is white or near-black, whichever reads better: it is refused only when
neither reaches 4.5:1. Refusing rather than warning: a brand is shown to every customer of the
tenant, in e-mails and PDFs nobody reviews one by one, so an unreadable colour is an error.

Logos. At most ``WHITELABEL_LOGO_MAX_BYTES`` (512 KiB) and ``WHITELABEL_LOGO_MAX_PIXELS`` (4096) a
side. A raster logo (PNG, JPEG, WebP) is decoded whole by Pillow: the format is what the bytes are,
never what the file name or the client's content type claim. An SVG is parsed as XML and refused
(not cleaned) when it could run or fetch anything: a DTD or entity, a processing instruction, any
element outside the static drawing set (``script``, ``foreignObject``, HTML…), an ``on*`` event
attribute, a reference (``href``, ``url(...)``) that is not a fragment of the file itself, or
``javascript:`` anywhere.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from django.conf import settings

from apps.common.exceptions import InvalidInput
from apps.dns import validators as dns_validators

AA_TEXT = 4.5
WHITE = "#ffffff"
DARK_TEXT = "#111827"
HEX_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


# --- colours --------------------------------------------------------------------------------------


def hex_color(value, *, field: str) -> str:
    if not isinstance(value, str) or not HEX_RE.match(value.strip()):
        raise InvalidInput("A colour is #rrggbb (six hexadecimal digits).", field=field)
    return value.strip().lower()


def luminance(color: str) -> float:
    """WCAG 2.x relative luminance of an sRGB ``#rrggbb``."""

    def channel(part: str) -> float:
        c = int(part, 16) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(color[i : i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_on(background: str) -> str:
    """White or dark text, whichever reads better on ``background``."""
    return WHITE if contrast(background, WHITE) >= contrast(background, DARK_TEXT) else DARK_TEXT


def primary_color(value) -> str:
    color = hex_color(value, field="primary_color")
    ratio = contrast(color, WHITE)
    if ratio < AA_TEXT:
        raise InvalidInput(
            f"{color} reaches {ratio:.2f}:1 against white; text in the primary colour needs at least 4.5:1 "
            "(WCAG 2.x AA). Choose a darker shade.",
            code="low_contrast",
            field="primary_color",
        )
    return color


def accent_color(value) -> str:
    color = hex_color(value, field="accent_color")
    best = max(contrast(color, WHITE), contrast(color, DARK_TEXT))
    if best < AA_TEXT:
        raise InvalidInput(
            f"{color} reaches only {best:.2f}:1 with white or dark text; the accent colour needs 4.5:1 with one "
            "of them (WCAG 2.x AA). Choose a lighter or darker shade.",
            code="low_contrast",
            field="accent_color",
        )
    return color


# --- logos ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Logo:
    content: bytes
    content_type: str
    extension: str
    width: int | None
    height: int | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


RASTER = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"), "WEBP": ("image/webp", "webp")}


def max_bytes() -> int:
    return int(getattr(settings, "WHITELABEL_LOGO_MAX_BYTES", 512 * 1024))


def max_side() -> int:
    return int(getattr(settings, "WHITELABEL_LOGO_MAX_PIXELS", 4096))


def logo(content: bytes) -> Logo:
    """The uploaded bytes as a logo, or a 400 that says why not."""
    limit = max_bytes()
    if len(content) > limit:
        raise InvalidInput(
            f"The logo is {len(content)} bytes; at most {limit} are accepted.", code="too_large", field="file"
        )
    if not content:
        raise InvalidInput("The file is empty.", field="file")
    head = content[:512].lstrip()
    if head.startswith(b"<") or head.startswith(b"\xef\xbb\xbf<"):
        return _svg(content)
    return _raster(content)


def _raster(content: bytes) -> Logo:
    from PIL import Image, ImageFile, UnidentifiedImageError

    side = max_side()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as image:
                kind = image.format
                width, height = image.size
                if kind not in RASTER:
                    raise InvalidInput(
                        f"A logo is a PNG, JPEG, WebP or SVG image, not {kind}.", code="not_an_image", field="file"
                    )
                # Checked from the header, before the pixels are decoded: a small file may declare
                # a huge canvas.
                if width > side or height > side:
                    raise InvalidInput(
                        f"The logo is {width}x{height} pixels; at most {side} a side.", code="too_large", field="file"
                    )
                # Decodes every pixel: a truncated or corrupt file fails here. WeasyPrint turns
                # Pillow's LOAD_TRUNCATED_IMAGES on for the whole process when it is imported (PDFs
                # then render a cut image); a logo we store must be whole, so it is off meanwhile.
                lenient, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
                try:
                    image.load()
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:  # fmt: skip
        raise InvalidInput(
            "The file is not a PNG, JPEG, WebP or SVG image that can be read.", code="not_an_image", field="file"
        ) from exc
    content_type, extension = RASTER[kind]
    return Logo(content, content_type, extension, width, height)


SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
# Drawing only: no script, no foreignObject (HTML inside), no image/feImage (external or nested
# documents), no animation (``set``/``animate`` can rewrite an href into javascript:).
SVG_ELEMENTS = frozenset({
    "svg", "g", "defs", "desc", "title", "metadata", "symbol", "use", "path", "rect", "circle", "ellipse", "line",
    "polyline", "polygon", "text", "tspan", "textPath", "linearGradient", "radialGradient", "stop", "clipPath",
    "mask", "pattern", "marker", "style", "filter", "feBlend", "feColorMatrix", "feComponentTransfer", "feComposite",
    "feConvolveMatrix", "feDiffuseLighting", "feDisplacementMap", "feDistantLight", "feDropShadow", "feFlood",
    "feFuncA", "feFuncB", "feFuncG", "feFuncR", "feGaussianBlur", "feMerge", "feMergeNode", "feMorphology",
    "feOffset", "fePointLight", "feSpecularLighting", "feSpotLight", "feTile", "feTurbulence",
})  # fmt: skip
# Namespaces a browser may run or render as a document inside an SVG.
ACTIVE_NAMESPACES = frozenset({"http://www.w3.org/1999/xhtml", "http://www.w3.org/1998/Math/MathML"})
URL_RE = re.compile(r"url\s*\(\s*['\"]?\s*([^'\")\s]*)", re.IGNORECASE)
DIMENSION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(px)?\s*$")


def _refuse_svg(why: str) -> InvalidInput:
    return InvalidInput(f"This SVG is refused: {why}", code="unsafe_svg", field="file")


def _svg(content: bytes) -> Logo:
    lowered = content.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise _refuse_svg("it declares a DTD or entities.")
    if b"javascript:" in lowered.replace(b" ", b"").replace(b"\t", b"").replace(b"\n", b""):
        raise _refuse_svg("it contains a javascript: reference.")
    try:
        # No DTD reached this point (refused above), so no entity can expand or fetch anything.
        events = list(ET.iterparse(io.BytesIO(content), events=("start", "pi")))  # noqa: S314
    except ET.ParseError as exc:
        raise InvalidInput(
            f"The file is not a PNG, JPEG, WebP or SVG image that can be read ({exc}).",
            code="not_an_image",
            field="file",
        ) from exc
    if not events or events[0][0] != "start" or events[0][1].tag != f"{{{SVG_NS}}}svg":
        raise InvalidInput("An SVG's root element is <svg> in the SVG namespace.", code="not_an_image", field="file")
    for kind, element in events:
        if kind == "pi":
            raise _refuse_svg("it holds a processing instruction.")
        namespace, _, name = element.tag[1:].partition("}") if element.tag.startswith("{") else ("", "", element.tag)
        if namespace in ACTIVE_NAMESPACES or (namespace == SVG_NS and name not in SVG_ELEMENTS):
            raise _refuse_svg(f"<{name}> is not allowed in a logo.")
        if not namespace:
            raise _refuse_svg(f"<{name}> is outside the SVG namespace.")
        for attr, value in element.attrib.items():
            local = attr.rsplit("}", 1)[-1].lower()
            if local.startswith("on"):
                raise _refuse_svg(f"the event handler {local}= is not allowed.")
            if local == "href" and not value.strip().startswith("#"):
                raise _refuse_svg(f"it refers to {value.strip()[:60]!r} outside the file.")
            _check_urls(value)
        if name == "style":
            _check_urls(element.text or "")
            if "@import" in (element.text or "").lower():
                raise _refuse_svg("its style imports another file.")
    root = events[0][1]
    return Logo(content, "image/svg+xml", "svg", _svg_side(root, "width", 2), _svg_side(root, "height", 3))


def _check_urls(text: str) -> None:
    for target in URL_RE.findall(text):
        if target and not target.startswith("#"):
            raise _refuse_svg(f"it refers to {target[:60]!r} outside the file.")


def _svg_side(root, attr: str, view_box_index: int) -> int | None:
    match = DIMENSION_RE.match(root.get(attr, ""))
    if match:
        return round(float(match.group(1)))
    parts = root.get("viewBox", "").replace(",", " ").split()
    try:
        return round(float(parts[view_box_index])) if len(parts) == 4 else None
    except ValueError:
        return None


MAX_NAMESERVERS = 13  # what fits in a referral without truncation, and more than anyone runs


def nameservers(values) -> list[str]:
    """Vanity name servers: none (the platform's), or at least two different host names (lower case,
    IDNA A-labels, no trailing dot), each checked by the DNS module's rule for names."""
    if values in (None, "", []):
        return []
    if isinstance(values, str):
        values = [v for v in values.replace(",", " ").split() if v]
    if not isinstance(values, list | tuple):
        raise InvalidInput("A list of host names.", field="nameservers")
    names = [dns_validators.zone_name(v, field="nameservers") for v in values]
    if len(names) < 2:
        raise InvalidInput("Give at least two name servers (or none for the platform's).", field="nameservers")
    if len(names) > MAX_NAMESERVERS:
        raise InvalidInput(f"At most {MAX_NAMESERVERS} name servers.", field="nameservers")
    if len(set(names)) != len(names):
        raise InvalidInput("A name server is listed twice.", field="nameservers")
    return names
