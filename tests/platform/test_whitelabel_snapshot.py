"""Issued invoices and credit notes keep their seller as it was on the day they were issued (EU VAT
directive 2006/112/EC art. 226): a later change of the brand (legal name, address, VAT id, logo,
footer) rewrites drafts only. The PDFs' text is extracted with pypdf."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.cache import cache
from PIL import Image
from pypdf import PdfReader

from apps.billing.services import credit_notes, documents, invoices
from apps.whitelabel import services as brand_services
from apps.whitelabel.models import Brand
from tests.billing_support import draft

OLD = {"display_name": "Nimbus Hosting", "legal_name": "Nimbus Old B.V.", "address_line1": "Oudegracht 1",
       "city": "Utrecht", "country": "NL", "vat_id": "NL111111111B01", "invoice_footer": "Old bank NL01 OLD",
       "support_email": "old@nimbus.example"}  # fmt: skip
NEW = {"legal_name": "Nimbus New Ltd", "address_line1": "1 New Street", "city": "Dublin", "country": "IE",
       "vat_id": "IE9999999W", "invoice_footer": "New bank IE02 NEW",
       "support_email": "new@nimbus.example"}  # fmt: skip


@pytest.fixture(autouse=True)
def _clean(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    cache.clear()
    yield
    cache.clear()


def png(color) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 20), color).save(out, "PNG")
    return out.getvalue()


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def images_of(pdf: bytes) -> list[bytes]:
    return [img.data for page in PdfReader(io.BytesIO(pdf)).pages for img in page.images]


@pytest.mark.django_db
def test_issued_documents_keep_their_seller_drafts_follow_the_brand(
    tenant_a, settings, django_capture_on_commit_callbacks
):
    fx = tenant_a
    with fx.scope():
        brand_services.brand_update(tenant=fx.tenant, data=OLD)
        brand_services.logo_upload(tenant=fx.tenant, content=png((200, 0, 0)))
    old_logo = Brand.all_tenants.get(tenant=fx.tenant).logo
    invoice = draft(fx)
    later_draft = draft(fx)
    with fx.scope():
        invoice = invoices.invoice_issue(invoice=invoice)
    snapshot = invoice.seller_details
    assert snapshot["legal_name"] == "Nimbus Old B.V." and snapshot["vat_id"] == "NL111111111B01"
    assert snapshot["address_lines"] == ["Oudegracht 1", "Utrecht", "Netherlands"]
    assert snapshot["logo"] == old_logo and len(snapshot["logo_sha256"]) == 64 and snapshot["taken_at"]
    assert snapshot["invoice_footer"] == "Old bank NL01 OLD" and snapshot["support_email"] == "old@nimbus.example"

    # The brand changes: new legal details and a new logo (the old file stays: an invoice shows it).
    with fx.scope(), django_capture_on_commit_callbacks(execute=True):
        brand_services.brand_update(tenant=fx.tenant, data=NEW)
        brand_services.logo_upload(tenant=fx.tenant, content=png((0, 0, 200)))
    assert (Path(settings.MEDIA_ROOT) / old_logo).exists()

    with fx.scope():
        invoice.refresh_from_db()
        issued_text = text_of(issued_pdf := documents.invoice_pdf(invoice))
        draft_text = text_of(draft_pdf := documents.invoice_pdf(later_draft))
    for old, new in (("Nimbus Old B.V.", "Nimbus New Ltd"), ("NL111111111B01", "IE9999999W"),
                     ("Oudegracht 1", "1 New Street"), ("Old bank NL01 OLD", "New bank IE02 NEW")):  # fmt: skip
        assert old in issued_text and new not in issued_text, old
        assert new in draft_text and old not in draft_text, new
    # The logos differ too: red on the issued invoice, blue on the draft.
    (issued_logo,), (draft_logo,) = images_of(issued_pdf), images_of(draft_pdf)
    assert issued_logo != draft_logo

    # A credit note issued now carries today's seller, and keeps it after another change.
    with fx.scope():
        note = credit_notes.credit_note_create(invoice=invoice, reason="Goodwill")
    assert note.seller_details["legal_name"] == "Nimbus New Ltd"
    with fx.scope():
        brand_services.brand_update(tenant=fx.tenant, data={"legal_name": "Nimbus Third GmbH"})
        note_text = text_of(documents.credit_note_pdf(note))
        assert "Nimbus New Ltd" in note_text and "Nimbus Third GmbH" not in note_text
        # The invoice still shows its own seller, two changes later.
        assert "Nimbus Old B.V." in text_of(documents.invoice_pdf(invoice))


@pytest.mark.django_db
def test_a_logo_no_document_shows_is_still_removed(tenant_a, settings, django_capture_on_commit_callbacks):
    fx = tenant_a
    with fx.scope():
        brand_services.logo_upload(tenant=fx.tenant, content=png((10, 120, 10)))
    first = Brand.all_tenants.get(tenant=fx.tenant).logo
    draft(fx)  # a draft shows the current brand: it keeps nothing
    with fx.scope(), django_capture_on_commit_callbacks(execute=True):
        brand_services.logo_upload(tenant=fx.tenant, content=png((10, 10, 120)))
    assert not (Path(settings.MEDIA_ROOT) / first).exists()
