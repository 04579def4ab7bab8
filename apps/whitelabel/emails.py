"""E-mails to a tenant's customers, in the tenant's brand: ``branded_message(...)``.

The caller writes the plain text once; the HTML part is made from it (paragraphs, links) inside the
brand's layout (logo, colours, contact and legal details), so both parts always say the same and a
line added to a text template shows in the HTML too. The sender's display name is the brand's, the
address ``WHITELABEL_FROM_EMAIL`` (else the address of ``DEFAULT_FROM_EMAIL``, without its name),
and replies go to the brand's support address.
"""

from __future__ import annotations

from email.utils import formataddr, parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template import Context, engines
from django.template.engine import Engine
from django.template.loader import render_to_string
from django.utils.html import escape, urlize
from django.utils.safestring import mark_safe

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


def sender(brand: BrandView) -> str:
    address = getattr(settings, "WHITELABEL_FROM_EMAIL", "") or parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    return formataddr((brand.display_name, address))


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
) -> EmailMultiAlternatives:
    """A message from ``tenant`` to its customer: text and HTML, the brand's sender and Reply-To."""
    brand = brand_for(tenant)
    footer = text_footer(brand)
    body = f"{text.rstrip()}\n\n-- \n{footer}\n" if footer else text.rstrip() + "\n"
    message = EmailMultiAlternatives(
        subject=subject,
        body=body,
        from_email=sender(brand),
        to=to,
        reply_to=[formataddr((brand.display_name, brand.support_email))] if brand.support_email else None,
    )
    html = render_to_string(
        "whitelabel/email.html",
        {"brand": brand, "subject": subject, "content": mark_safe(html_body(text))},  # noqa: S308 - html_body escapes every line
    )
    message.attach_alternative(html, "text/html")
    for name, content, mimetype in attachments or ():
        message.attach(name, content, mimetype)
    return message
