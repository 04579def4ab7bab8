"""ACME HTTP-01 challenge answers on the node (RFC 8555 8.3), served by the site's vhost.

The answer to token ``T`` is the file ``<node root>/web/acme/<site id>/.well-known/acme-challenge/T``;
the site's vhost (``agent/web.py``) serves that folder at ``/.well-known/acme-challenge/`` over plain
HTTP, before the site has a certificate and whatever its HTTP → HTTPS redirect. The answer (the key
authorisation) is public by design: it proves control of the site, it grants nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import AgentError
from .registry import OPERATIONS, Node

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")  # base64url (RFC 8555 8.1)
ANSWER_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}\.[A-Za-z0-9_-]{43}$")  # token "." base64url(SHA-256 thumbprint)
SITE_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$")


def _folder(node: Node, site_id) -> Path:
    if not isinstance(site_id, str) or not SITE_ID_RE.match(site_id):
        raise AgentError(f"bad site id {site_id!r}", permanent=True)
    return Path(node.root) / "web" / "acme" / site_id / ".well-known" / "acme-challenge"


def _token(value) -> str:
    if not isinstance(value, str) or not TOKEN_RE.match(value):
        raise AgentError("bad ACME token", permanent=True)
    return value


@OPERATIONS.register("acme_challenge_put")
def challenge_put(node: Node, args: dict) -> dict:
    folder = _folder(node, args.get("site"))
    token = _token(args.get("token"))
    answer = args.get("answer")
    if not isinstance(answer, str) or not ANSWER_RE.match(answer) or not answer.startswith(token + "."):
        raise AgentError("bad ACME key authorisation", permanent=True)
    folder.mkdir(parents=True, exist_ok=True)
    for part in (folder, folder.parent, folder.parent.parent):
        os.chmod(part, 0o755)  # noqa: S103 - nginx's workers read it (the answers are public)
    tmp = folder / f".{token}.tmp"
    tmp.write_text(answer)
    os.chmod(tmp, 0o644)
    os.replace(tmp, folder / token)
    return {"site": args["site"], "token": token, "written": True}


@OPERATIONS.register("acme_challenge_remove")
def challenge_remove(node: Node, args: dict) -> dict:
    folder = _folder(node, args.get("site"))
    token = _token(args.get("token"))
    path = folder / token
    existed = path.exists()
    path.unlink(missing_ok=True)
    return {"site": args["site"], "token": token, "removed": existed}
