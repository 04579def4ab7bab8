"""The node side of SSL on a real nginx, without a CA: the HTTP-01 location (served over plain HTTP,
exempt from the HTTPS redirect), a certificate installed from the spec (key 0600, served, HSTS),
and a bad bundle refused before anything is written."""

from __future__ import annotations

import pytest

from agent import certs, pem
from agent.errors import AgentError
from agent.web import WebRuntime
from tests.ssl_support import make_bundle, wait_served
from tests.web_support import nginx_node, web_root  # noqa: F401  (fixtures)

TOKEN = "tok_" + "A" * 40
ANSWER = TOKEN + "." + "b" * 43


class FakeNode:
    def __init__(self, root):
        self.root = root


def test_challenge_served_over_http_despite_the_https_redirect(nginx_node):  # noqa: F811
    web = WebRuntime(nginx_node.root / "web")
    spec = {"id": "wacme", "domains": ["acme.example"], "status": "active", "https": True, "redirect_https": True}
    web.site_ensure(spec)
    certs.challenge_put(FakeNode(nginx_node.root), {"site": "wacme", "token": TOKEN, "answer": ANSWER})
    status, text, _ = nginx_node.wait_until("acme.example", 200, f"/.well-known/acme-challenge/{TOKEN}")
    assert (status, text) == (200, ANSWER)
    status, _text, headers = nginx_node.wait_until("acme.example", 301, "/")
    assert headers["Location"] == "https://acme.example/"
    certs.challenge_remove(FakeNode(nginx_node.root), {"site": "wacme", "token": TOKEN})
    assert nginx_node.wait_until("acme.example", 404, f"/.well-known/acme-challenge/{TOKEN}")[0] == 404
    for bad in ({"site": "../x", "token": TOKEN, "answer": ANSWER}, {"site": "wacme", "token": "../../etc/passwd",
                "answer": ANSWER}, {"site": "wacme", "token": TOKEN, "answer": "other." + "b" * 43}):  # fmt: skip
        with pytest.raises(AgentError):
            certs.challenge_put(FakeNode(nginx_node.root), bad)


def test_installed_certificate_is_served_and_a_bad_one_refused(nginx_node):  # noqa: F811
    web = WebRuntime(nginx_node.root / "web")
    bundle = make_bundle(["tls.example", "www.tls.example"])
    spec = {"id": "wtls", "domains": ["tls.example", "www.tls.example"], "status": "active", "https": True,
            "tls": {"certificate": bundle.certificate + bundle.chain, "private_key": bundle.private_key,
                    "hsts": True}}  # fmt: skip
    result = web.site_ensure(spec)
    facts = pem.check_bundle(bundle.certificate, bundle.chain, bundle.private_key)
    assert result["certificate"]["sha256"] == facts["sha256"] and "private_key" not in str(result)
    served = wait_served(nginx_node, "www.tls.example", bundle.root)
    assert format(served.serial_number, "x") == facts["serial"]
    assert nginx_node.get("tls.example", https=True)[2].get("Strict-Transport-Security") == "max-age=31536000"
    ssl_dir = nginx_node.root / "web" / "ssl"
    (key,) = ssl_dir.glob("wtls.*.key")
    assert key.stat().st_mode & 0o777 == 0o600

    other = make_bundle(["tls.example"])
    before = sorted(p.name for p in ssl_dir.iterdir())
    broken = {**spec, "tls": {"certificate": bundle.certificate, "private_key": other.private_key}}
    with pytest.raises(AgentError) as refused:
        web.site_ensure(broken)
    assert "private_key" in refused.value.message and other.private_key not in refused.value.message
    assert sorted(p.name for p in ssl_dir.iterdir()) == before

    # Without a certificate the site goes back to a self-signed one, and no HSTS.
    result = web.site_ensure({**spec, "tls": None})
    assert result["certificate"]["issuer"] == "self-signed"
    assert not list(ssl_dir.glob("wtls.*.key"))


def test_covers_follows_rfc_6125_wildcards():
    assert pem.covers(["*.example.com"], "www.example.com")
    assert not pem.covers(["*.example.com"], "example.com")
    assert not pem.covers(["*.example.com"], "a.b.example.com")
    assert pem.covers(["example.com"], "EXAMPLE.com.")
