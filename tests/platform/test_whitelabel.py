"""White-label: the brand API (roles, contrast, logos), and the brand where customers see it: the
invoice e-mails (Django's outbox: text and HTML, From name, Reply-To), invoice and credit-note PDFs
(text extracted with pypdf) and the public catalog. No platform name reaches a customer."""

from __future__ import annotations

import io
import os
from email.utils import parseaddr
from pathlib import Path

import pytest
from django.core import mail
from django.core.cache import cache
from django.urls import reverse
from PIL import Image
from pypdf import PdfReader

from apps.audit.models import AuditEvent
from apps.tenancy.roles import ORDERED, Role
from apps.whitelabel import validators
from apps.whitelabel.api import BrandLogoViewSet, BrandViewSet
from apps.whitelabel.models import Brand
from apps.whitelabel.selectors import brand_for
from tests.billing_support import customer_of, draft
from tests.conftest import client_for

BRAND = "/api/v1/enterprise/white-label"
LOGO = "/api/v1/enterprise/white-label/logo"
FULL = {
    "display_name": "Nimbus Hosting",
    "primary_color": "#0b3d91",
    "accent_color": "#ffd166",
    "support_email": "help@nimbus.example",
    "support_url": "https://help.nimbus.example",
    "support_phone": "+31 20 555 0100",
    "legal_name": "Nimbus Hosting B.V.",
    "address_line1": "Keizersgracht 100",
    "postal_code": "1015 AA",
    "city": "Amsterdam",
    "country": "NL",
    "vat_id": "NL 8512.34.567.B01",
    "registration_number": "KvK 12345678",
    "invoice_footer": "Paid by bank transfer to NL91 ABNA 0417 1643 00.",
    "terms_url": "https://nimbus.example/terms",
}


@pytest.fixture(autouse=True)
def _clean(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MPANEL_FRONTEND_URL = "https://portal.nimbus.example"
    cache.clear()
    yield
    cache.clear()


def png(width=64, height=32, color=(11, 61, 145)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def upload(client, content: bytes, name: str = "logo.png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(LOGO, {"file": SimpleUploadedFile(name, content)}, format="multipart")


def stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def branded(fx, django_capture_on_commit_callbacks, **extra):
    admin = client_for(fx.users[Role.ADMIN], fx.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.put(BRAND, {**FULL, **extra}, format="json")
        assert response.status_code == 200, response.content
        assert upload(admin, png()).status_code == 201
    return admin


# --- the API ----------------------------------------------------------------------------------------


@pytest.mark.django_db
class TestBrandApi:
    covers = [BrandViewSet, BrandLogoViewSet]

    def test_role_matrix_and_anonymous(self, tenant_a, django_capture_on_commit_callbacks):
        for role in ORDERED:
            client = client_for(tenant_a.users[role], tenant_a.tenant)
            read = 200 if role.includes(Role.MEMBER) else 403
            write = 200 if role.includes(Role.ADMIN) else 403
            assert client.get(BRAND).status_code == read, role
            assert client.get(LOGO).status_code == read, role
            assert client.patch(BRAND, {"display_name": f"By {role.value}"}, format="json").status_code == write, role
            assert client.put(BRAND, FULL, format="json").status_code == write, role
            with django_capture_on_commit_callbacks(execute=True):
                assert upload(client, png()).status_code == (201 if write == 200 else 403), role
                assert client.delete(LOGO).status_code == write, role
        anonymous = client_for(None, tenant_a.tenant)
        for method in ("get", "put", "patch"):
            assert getattr(anonymous, method)(BRAND, {}, format="json").status_code == 401
        for method in ("get", "post", "delete"):
            assert getattr(anonymous, method)(LOGO, {}, format="json").status_code == 401
        assert reverse("white-label") == BRAND

    def test_defaults_put_patch_audit_and_isolation(self, tenant_a, tenant_b):
        admin = client_for(tenant_a.owner, tenant_a.tenant)
        body = admin.get(BRAND).json()
        assert body["display_name"] == tenant_a.tenant.name and body["logo"] is None and body["updated_at"] is None
        assert body["contrast"]["primary_on_white"] >= 4.5
        response = admin.put(BRAND, FULL, format="json")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["vat_id"] == "NL8512.34.567.B01" and body["country"] == "NL"
        assert body["contrast"] == {
            "primary_on_white": round(validators.contrast("#0b3d91", "#ffffff"), 2),
            "text_on_primary": "#ffffff",
            "accent_best": round(validators.contrast("#ffd166", validators.DARK_TEXT), 2),
            "text_on_accent": validators.DARK_TEXT,
        }
        # PATCH changes what it sends; PUT replaces the whole brand (left-out fields back to defaults).
        assert admin.patch(BRAND, {"support_phone": ""}, format="json").json()["legal_name"] == FULL["legal_name"]
        replaced = admin.put(BRAND, {"display_name": "Nimbus"}, format="json").json()
        assert (
            replaced["legal_name"] == "" and replaced["primary_color"] == Brand._meta.get_field("primary_color").default
        )
        assert admin.put(BRAND, {"legal_name": "No name"}, format="json").status_code == 400  # PUT is whole
        events = AuditEvent.objects.filter(tenant=tenant_a.tenant, action="whitelabel.brand_update")
        assert events.count() == 3 and events.first().actor_id == tenant_a.owner.pk
        # Another tenant reads and writes only its own brand.
        other = client_for(tenant_b.owner, tenant_b.tenant)
        assert other.get(BRAND).json()["display_name"] == tenant_b.tenant.name
        other.patch(BRAND, {"display_name": "B's brand"}, format="json")
        assert admin.get(BRAND).json()["display_name"] == "Nimbus"

    @pytest.mark.parametrize(
        "body",
        [
            {"primary_color": "#ffcc00"},  # 1.6:1 on white
            {"primary_color": "#777777"},  # 4.48:1: just under
            {"accent_color": "#777777"},  # under 4.5:1 with white and with dark text
            {"primary_color": "blue"},
            {"primary_color": "#12345"},
            {"accent_color": 123456},
            {"support_email": "not-an-address"},
            {"terms_url": "javascript:alert(1)"},
            {"vat_id": "<script>"},
            {"display_name": "x" * 101},
            {"country": "XX"},
        ],
    )
    def test_bad_input_is_400_and_changes_nothing(self, tenant_a, body):
        admin = client_for(tenant_a.owner, tenant_a.tenant)
        response = admin.patch(BRAND, body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert not Brand.all_tenants.filter(tenant=tenant_a.tenant).exists()

    def test_contrast_answers_the_ratio(self, tenant_a):
        admin = client_for(tenant_a.owner, tenant_a.tenant)
        response = admin.patch(BRAND, {"primary_color": "#ffcc00"}, format="json")
        assert "4.5:1" in str(response.json()) and "1.5" in str(response.json())
        assert (
            admin.patch(BRAND, {"primary_color": "#767676", "accent_color": "#ffffff"}, format="json").status_code
            == 200
        )


class TestContrast:
    def test_wcag_reference_values(self):
        assert validators.contrast("#000000", "#ffffff") == pytest.approx(21.0)
        assert validators.contrast("#ffffff", "#ffffff") == pytest.approx(1.0)
        assert validators.contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the lightest AA grey
        assert validators.contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
        assert validators.text_on("#ffd166") == validators.DARK_TEXT
        assert validators.text_on("#0b3d91") == validators.WHITE


# --- logos --------------------------------------------------------------------------------------------

SCRIPT_SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
REFUSED_SVGS = {
    "script": SCRIPT_SVG,
    "handler": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="1" height="1"/></svg>',
    "external href": b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
    b'<use xlink:href="https://evil.example/x.svg#a"/></svg>',
    "image": b'<svg xmlns="http://www.w3.org/2000/svg"><image href="https://evil.example/p.png"/></svg>',
    "css url": b'<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill:url(https://evil.example/a)"/></svg>',
    "style import": b'<svg xmlns="http://www.w3.org/2000/svg"><style>@import "https://evil.example/a.css";</style>'
    b"</svg>",
    "foreignObject": b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div xmlns="http://www.w3.org/1999/'
    b'xhtml">x</div></foreignObject></svg>',
    "javascript link": b'<svg xmlns="http://www.w3.org/2000/svg"><a href="java\nscript:alert(1)"><rect/></a></svg>',
    "entities": b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa">]><svg xmlns="http://www.w3.org/2000/svg">'
    b"<text>&a;</text></svg>",
    "animate to javascript": b'<svg xmlns="http://www.w3.org/2000/svg"><set attributeName="href" to="x"/></svg>',
    "not svg root": b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>',
}


@pytest.mark.django_db
class TestLogo:
    def test_png_is_stored_served_replaced_and_deleted(self, tenant_a, settings, django_capture_on_commit_callbacks):
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        with django_capture_on_commit_callbacks(execute=True):
            response = upload(admin, png(), name="whatever.gif")  # the bytes decide, not the name
        assert response.status_code == 201, response.content
        logo = response.json()["logo"]
        assert logo["content_type"] == "image/png" and (logo["width"], logo["height"]) == (64, 32)
        [first] = stored_files(settings)
        assert first.read_bytes() == png() and first.suffix == ".png"
        served = client_for().get(logo["url"].split("testserver", 1)[1])
        assert served.status_code == 200 and served["Content-Type"] == "image/png"
        assert served["X-Content-Type-Options"] == "nosniff" and b"".join(served.streaming_content) == png()
        # A new logo replaces the file once its transaction commits.
        with django_capture_on_commit_callbacks(execute=True):
            assert upload(admin, png(color=(0, 0, 0))).status_code == 201
        [second] = stored_files(settings)
        assert second != first
        with django_capture_on_commit_callbacks(execute=True):
            gone = admin.delete(LOGO)
        assert gone.status_code == 200 and gone.json()["logo"] is None
        assert stored_files(settings) == []
        assert admin.delete(LOGO).status_code == 409
        actions = set(AuditEvent.objects.filter(tenant=tenant_a.tenant).values_list("action", flat=True))
        assert {"whitelabel.logo_upload", "whitelabel.logo_delete"} <= actions

    def test_clean_svg_and_webp_and_jpeg_are_accepted(self, tenant_a):
        admin = client_for(tenant_a.owner, tenant_a.tenant)
        svg = (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 40">'
            b'<defs><linearGradient id="g"><stop offset="0" stop-color="#0b3d91"/></linearGradient></defs>'
            b'<rect width="120" height="40" fill="url(#g)"/><use href="#g"/><text x="4" y="28">Nimbus</text></svg>'
        )
        body = upload(admin, svg, "logo.svg").json()
        assert body["logo"]["content_type"] == "image/svg+xml" and body["logo"]["width"] == 120
        for kind, content_type in (("WEBP", "image/webp"), ("JPEG", "image/jpeg")):
            out = io.BytesIO()
            Image.new("RGB", (20, 20), (1, 2, 3)).save(out, kind)
            response = upload(admin, out.getvalue(), "logo.bin")
            assert response.status_code == 201 and response.json()["logo"]["content_type"] == content_type

    @pytest.mark.parametrize(
        "content",
        [
            pytest.param(b"this is not an image at all", id="text"),
            pytest.param(b"GIF89a" + b"\x00" * 40, id="gif-header"),
            pytest.param(png()[:60], id="truncated-png"),
            pytest.param(b"", id="empty"),
            *[pytest.param(svg, id=f"svg-{name}") for name, svg in REFUSED_SVGS.items()],
        ],
    )
    def test_refused_with_400_and_nothing_stored(self, tenant_a, settings, content):
        admin = client_for(tenant_a.owner, tenant_a.tenant)
        response = upload(admin, content, "logo.svg")
        assert response.status_code == 400, response.content
        assert stored_files(settings) == []
        assert not Brand.all_tenants.filter(tenant=tenant_a.tenant).exists()

    def test_too_large_in_bytes_or_pixels(self, tenant_a, settings):
        settings.WHITELABEL_LOGO_MAX_BYTES = 2000
        admin = client_for(tenant_a.owner, tenant_a.tenant)
        noisy = io.BytesIO()
        Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(noisy, "PNG")
        assert len(noisy.getvalue()) > 2000
        response = upload(admin, noisy.getvalue())
        assert response.status_code == 400 and "at most 2000" in response.json()["file"][0]
        settings.WHITELABEL_LOGO_MAX_BYTES = 512 * 1024
        wide = upload(admin, png(width=5000, height=1))
        assert wide.status_code == 400 and "5000x1 pixels" in wide.json()["file"][0]
        assert stored_files(settings) == []

    def test_a_failed_write_leaves_no_file(self, tenant_a, settings, monkeypatch):
        from apps.whitelabel import services

        def broken(tenant):
            raise RuntimeError("the database went away")

        monkeypatch.setattr(services, "_locked", broken)
        with pytest.raises(RuntimeError):
            services.logo_upload(tenant=tenant_a.tenant, content=png(), actor=tenant_a.owner)
        assert stored_files(settings) == []

    def test_unsafe_svg_says_why(self, tenant_a):
        response = upload(client_for(tenant_a.owner, tenant_a.tenant), SCRIPT_SVG, "logo.svg")
        assert response.json() == {"file": ["This SVG is refused: <script> is not allowed in a logo."]}


# --- where customers see it ---------------------------------------------------------------------------


def no_platform_name(*texts: str) -> None:
    for text in texts:
        assert "mpanel" not in text.lower(), text[:2000]


@pytest.mark.django_db
class TestBrandRendering:
    def test_invoice_email_text_html_sender_and_reply_to(self, tenant_a, django_capture_on_commit_callbacks):
        admin = branded(tenant_a, django_capture_on_commit_callbacks, display_name="Nimbus & Co")
        invoice = draft(tenant_a, customer=customer_of(tenant_a, email="buyer@example.com"))
        with django_capture_on_commit_callbacks(execute=True):
            assert admin.post(reverse("invoice-issue", kwargs={"pk": invoice.pk})).status_code == 200
        message = mail.outbox[-1]
        assert message.to == ["buyer@example.com"]
        assert parseaddr(message.from_email) == ("Nimbus & Co", "noreply@localhost")
        assert [parseaddr(a) for a in message.reply_to] == [("Nimbus & Co", "help@nimbus.example")]
        assert "Nimbus & Co" in message.subject
        # Text: the brand's name unescaped, and its signature.
        assert "Nimbus & Co has issued invoice" in message.body and "&amp;" not in message.body
        for part in ("help@nimbus.example", "+31 20 555 0100", "Nimbus Hosting B.V.", "Keizersgracht 100",
                     "VAT ID NL8512.34.567.B01"):  # fmt: skip
            assert part in message.body, part
        # HTML: the same words, the logo, the colour, links.
        [(html, mimetype)] = message.alternatives
        assert mimetype == "text/html"
        assert "Nimbus &amp; Co has issued invoice" in html
        brand = brand_for(tenant_a.tenant)
        assert brand.logo_url.startswith("https://portal.nimbus.example/brand/logo/") and brand.logo_url in html
        assert "#0b3d91" in html and 'href="mailto:help@nimbus.example"' in html
        assert "https://nimbus.example/terms" in html
        assert message.attachments[0][0].endswith(".pdf")
        raw = message.message()
        no_platform_name(message.subject, message.body, html, message.from_email, str(raw["From"]),
                         str(raw["Reply-To"]))  # fmt: skip

    def test_unbranded_tenant_is_shown_under_its_own_name(self, tenant_a, django_capture_on_commit_callbacks):
        invoice = draft(tenant_a)
        admin = client_for(tenant_a.owner, tenant_a.tenant)
        with django_capture_on_commit_callbacks(execute=True):
            admin.post(reverse("invoice-issue", kwargs={"pk": invoice.pk}))
        message = mail.outbox[-1]
        assert message.from_email.startswith(f"{tenant_a.tenant.name} <") and not message.reply_to
        no_platform_name(message.subject, message.body, message.alternatives[0][0], message.from_email)

    def test_invoice_and_credit_note_pdfs(self, tenant_a, django_capture_on_commit_callbacks):
        admin = branded(tenant_a, django_capture_on_commit_callbacks)
        invoice = draft(tenant_a)
        with django_capture_on_commit_callbacks(execute=True):
            admin.post(reverse("invoice-issue", kwargs={"pk": invoice.pk}))
        note = admin.post(reverse("invoice-credit-notes", kwargs={"pk": invoice.pk}), {}, format="json").json()
        urls = (
            reverse("invoice-pdf", kwargs={"pk": invoice.pk}),
            reverse("credit-note-pdf", kwargs={"pk": note["id"]}),
        )
        for url in urls:
            pdf = PdfReader(io.BytesIO(admin.get(url).content))
            text = "\n".join(page.extract_text() for page in pdf.pages)
            for part in ("Nimbus Hosting B.V.", "Keizersgracht 100", "1015 AA Amsterdam", "Netherlands",
                         "VAT ID: NL8512.34.567.B01", "KvK 12345678", "help@nimbus.example",
                         "NL91 ABNA 0417 1643 00", "https://nimbus.example/terms"):  # fmt: skip
                assert part in text, (url, part, text)
            images = [img for page in pdf.pages for img in page.images]
            assert images, "the logo is in the PDF"
            metadata = " ".join(str(v) for v in (pdf.metadata or {}).values())
            no_platform_name(text, metadata)

    def test_public_catalog_answers_the_brand_and_follows_changes(self, tenant_a, django_capture_on_commit_callbacks):
        anonymous = client_for()
        params = {"tenant": tenant_a.tenant.slug}
        body = anonymous.get("/api/v1/products", params).json()
        assert body["brand"]["display_name"] == tenant_a.tenant.name and body["brand"]["logo_url"] is None
        branded(tenant_a, django_capture_on_commit_callbacks)
        body = anonymous.get("/api/v1/products", params).json()
        assert body["tenant"] == {"name": "Nimbus Hosting", "slug": tenant_a.tenant.slug}
        assert body["brand"] == brand_for(tenant_a.tenant).public()
        assert body["brand"]["support_email"] == "help@nimbus.example" and body["brand"]["logo_url"]
        assert "legal_name" not in body["brand"] and str(tenant_a.tenant.pk) not in str(body)
        no_platform_name(str(body))

    def test_brand_for_is_cached_and_dropped_on_save(self, tenant_a, django_capture_on_commit_callbacks):
        assert brand_for(tenant_a.tenant).display_name == tenant_a.tenant.name
        Brand.all_tenants.create(tenant=tenant_a.tenant, display_name="Behind the cache's back")
        cache_hit = brand_for(tenant_a.tenant)
        assert cache_hit.display_name == tenant_a.tenant.name  # served from the cache
        admin = client_for(tenant_a.owner, tenant_a.tenant)
        with django_capture_on_commit_callbacks(execute=True):
            admin.patch(BRAND, {"display_name": "Through the service"}, format="json")
        assert brand_for(tenant_a.tenant).display_name == "Through the service"
        assert brand_for(str(tenant_a.tenant.pk)).display_name == "Through the service"


# --- the operators' admin ----------------------------------------------------------------------------


@pytest.mark.django_db
class TestBrandAdmin:
    def test_brand_page_previews_the_logo_and_writes_through_the_services(
        self, client, tenant_a, django_capture_on_commit_callbacks
    ):
        from tests.conftest import admin_login, make_user

        branded(tenant_a, django_capture_on_commit_callbacks)
        brand = Brand.all_tenants.get(tenant=tenant_a.tenant)
        admin_login(client, make_user("root@ops.test", is_staff=True, is_superuser=True))
        changelist = client.get(reverse("admin:whitelabel_brand_changelist"))
        assert changelist.status_code == 200 and b"/brand/logo/" in changelist.content
        change_url = reverse("admin:whitelabel_brand_change", args=[brand.pk])
        page = client.get(change_url)
        assert page.status_code == 200
        assert b"Logo preview" in page.content and b"/brand/logo/" in page.content and b"4.5:1" in page.content
        form = {**FULL, "tenant": str(tenant_a.tenant.pk), "vat_id": "NL8512.34.567.B01", "primary_color": "#ffcc00"}
        refused = client.post(change_url, form)
        assert refused.status_code == 200 and b"4.5:1" in refused.content  # the form says why
        assert Brand.all_tenants.get(pk=brand.pk).primary_color == "#0b3d91"
        with django_capture_on_commit_callbacks(execute=True):
            saved = client.post(change_url, {**form, "primary_color": "#123456", "display_name": "Nimbus Cloud"})
        assert saved.status_code == 302, saved.content[:2000]
        brand.refresh_from_db()
        assert (brand.display_name, brand.primary_color) == ("Nimbus Cloud", "#123456") and brand.logo
        event = AuditEvent.objects.filter(action="whitelabel.brand_update").order_by("-created_at").first()
        assert event.changes["display_name"] == ["Nimbus Hosting", "Nimbus Cloud"]
        assert brand_for(tenant_a.tenant).display_name == "Nimbus Cloud"
        domains = client.get(reverse("admin:whitelabel_customdomain_changelist"))
        assert domains.status_code == 200
