"""E-mails to a tenant's customers, in the tenant's brand: ``branded_message(...)``.

The sender: when the brand's ``sender_email`` is on a mail domain of the SAME tenant hosted here (so
its DKIM key is ours and its public half is published as ``<selector>._domainkey.<domain>``), the
message is From that address and DKIM-signed with that domain's key (dkimpy, rsa-sha256,
relaxed/relaxed) as it is handed to the mail server; receivers then see the tenant's own aligned
domain. Otherwise From is the platform's sending address under the brand's name, and replies go to
the brand (Reply-To: its support address, else its sender address).

The caller writes the plain text once; the HTML part is made from it (paragraphs, links) inside the
brand's layout (logo, colours, contact and legal details), so both parts always say the same and a
line added to a text template shows in the HTML too. The sender's display name is the brand's, the
address ``WHITELABEL_FROM_EMAIL`` (else the address of ``DEFAULT_FROM_EMAIL``, without its name),
and replies go to the brand's support address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formataddr, parseaddr

import dkim
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template import Context, engines
from django.template.engine import Engine
from django.template.loader import render_to_string
from django.utils.html import escape, urlize
from django.utils.safestring import mark_safe

from apps.common.registry import Registry

from .selectors import BrandView, brand_for

_TEXT_ENGINE: Engine | None = None


def render_text(template_name: str, context: dict) -> str:
    """A text template rendered WITHOUT HTML escaping: a text part is not HTML ("Smith & Co", not
    "Smith &amp; Co"); the HTML part escapes it once, when it is made from the text."""
    global _TEXT_ENGINE
    if _TEXT_ENGINE is None:
        engine = engines["django"].engine
        _TEXT_ENGINE = Engine(
            dirs=engine.dirs, app_dirs=engine.app_dirs, libraries=engine.libraries, autoescape=False,
            string_if_invalid=engine.string_if_invalid,
        )  # fmt: skip
    return _TEXT_ENGINE.get_template(template_name).render(Context(context, autoescape=False))


# The headers a signature covers: what a receiver shows or threads on (RFC 6376 section 5.4.1).
SIGNED_HEADERS = [b"from", b"to", b"cc", b"reply-to", b"subject", b"date", b"message-id", b"mime-version",
                  b"content-type"]  # fmt: skip


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    private_pem: str


class SignedMessage(EmailMultiAlternatives):
    """A message DKIM-signed when it is rendered for sending (``message()``, which the mail backend
    calls once per send: the signature covers exactly the bytes that go out)."""

    dkim_key: DkimKey | None = None

    def message(self, *args, **kwargs):
        msg = super().message(*args, **kwargs)
        if self.dkim_key is not None:
            key = self.dkim_key
            signature = dkim.sign(
                msg.as_bytes(linesep="\r\n"), key.selector.encode(), key.domain.encode(), key.private_pem.encode(),
                canonicalize=(b"relaxed", b"relaxed"), include_headers=SIGNED_HEADERS,
            )  # fmt: skip
            name, _, value = signature.decode().partition(":")
            msg[name] = value.strip().replace("\r\n", "")  # unfolded: relaxed canonicalisation ignores folding
        return msg


def platform_address() -> str:
    return getattr(settings, "WHITELABEL_FROM_EMAIL", "") or parseaddr(settings.DEFAULT_FROM_EMAIL)[1]


def sender(brand: BrandView) -> str:
    """The platform's sending address under the brand's name."""
    return formataddr((brand.display_name, platform_address()))


# Where a tenant's DKIM keys come from: callables (tenant id, domain) -> DkimKey | None. The mail app
# registers its hosted mail domains' keys (apps/mail/signing.py); it sits beside this app and imports it.
DKIM_KEYS: Registry[Callable[[str, str], DkimKey | None]] = Registry("DKIM key source")


def own_domain_key(brand: BrandView) -> DkimKey | None:
    """The DKIM key to send the brand's mail From its own ``sender_email``: only when that address's
    domain is a mail domain of the same tenant hosted here, with its key."""
    if not brand.sender_email or "@" not in brand.sender_email:
        return None
    domain = brand.sender_email.rsplit("@", 1)[1].lower()
    return next((key for source in DKIM_KEYS for key in [source(brand.tenant_id, domain)] if key), None)


def text_footer(brand: BrandView) -> str:
    return render_text("whitelabel/email_footer.txt", {"brand": brand}).strip()


def html_body(text: str) -> str:
    """Plain text as HTML paragraphs: escaped, line breaks kept, addresses and URLs made links."""
    paragraphs = [p.strip("\n") for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    rendered = []
    for paragraph in paragraphs:
        lines = [urlize(escape(line), nofollow=True, autoescape=False) for line in paragraph.split("\n")]
        rendered.append("<p>" + "<br>".join(lines) + "</p>")
    return "\n".join(rendered)


def branded_message(
    tenant, *, subject: str, text: str, to: list[str], attachments: list[tuple[str, bytes, str]] | None = None
) -> SignedMessage:
    """A message from ``tenant`` to its customer: text and HTML, the brand's sender and Reply-To (and a
    DKIM signature when it goes out From the tenant's own hosted mail domain)."""
    brand = brand_for(tenant)
    footer = text_footer(brand)
    body = f"{text.rstrip()}\n\n-- \n{footer}\n" if footer else text.rstrip() + "\n"
    key = own_domain_key(brand)
    reply = brand.support_email or brand.sender_email
    if key is not None and reply == brand.sender_email:
        reply = ""  # From already is that address
    message = SignedMessage(
        subject=subject,
        body=body,
        from_email=formataddr((brand.display_name, brand.sender_email)) if key else sender(brand),
        to=to,
        reply_to=[formataddr((brand.display_name, reply))] if reply else None,
    )
    message.dkim_key = key
    html = render_to_string(
        "whitelabel/email.html",
        {"brand": brand, "subject": subject, "content": mark_safe(html_body(text))},  # noqa: S308 - html_body escapes every line
    )
    message.attach_alternative(html, "text/html")
    for name, content, mimetype in attachments or ():
        message.attach(name, content, mimetype)
    return message
