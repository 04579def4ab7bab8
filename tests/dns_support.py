"""A real PowerDNS authoritative server (Debian pdns-server + pdns-backend-sqlite3) on free loopback
ports, with its own config dir and SQLite database, started once per test session; and helpers to
query it with dnspython."""

from __future__ import annotations

import secrets
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest

SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PowerDNSServer:
    dns_port: int
    api_url: str
    api_key: str
    proc: subprocess.Popen

    def resolver(self) -> dns.resolver.Resolver:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = self.dns_port
        r.lifetime = 5
        return r

    def ask(self, name: str, rtype: str) -> list[str]:
        """The answer's rdata as text ([] for NXDOMAIN/NODATA), asked over UDP without recursion."""
        query = dns.message.make_query(name, rtype)
        response = dns.query.udp(query, "127.0.0.1", port=self.dns_port, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            return []
        return sorted(
            rd.to_text() for rrset in response.answer for rd in rrset if rrset.rdtype == query.question[0].rdtype
        )

    def serial(self, zone: str) -> int | None:
        answer = self.ask(zone, "SOA")
        return int(answer[0].split()[2]) if answer else None


@pytest.fixture(scope="session")
def powerdns(tmp_path_factory):
    if shutil.which("pdns_server") is None or not SCHEMA.exists():
        pytest.fail(
            "pdns-server and pdns-backend-sqlite3 are needed: run the tests with `make test` (it installs them)"
        )
    conf_dir = tmp_path_factory.mktemp("pdns")
    db = conf_dir / "pdns.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.executescript(SCHEMA.read_text())
    dns_port, api_port, key = free_port(), free_port(), secrets.token_hex(16)
    (conf_dir / "pdns.conf").write_text(
        "\n".join(
            [
                "launch=gsqlite3",
                f"gsqlite3-database={db}",
                "local-address=127.0.0.1",
                f"local-port={dns_port}",
                "api=yes",
                f"api-key={key}",
                "webserver=yes",
                "webserver-address=127.0.0.1",
                f"webserver-port={api_port}",
                "webserver-allow-from=127.0.0.0/8",
                f"socket-dir={conf_dir}",
                "daemon=no",
                "guardian=no",
                "disable-syslog=yes",
                "cache-ttl=0",
                "negquery-cache-ttl=0",
                "query-cache-ttl=0",
                "zone-cache-refresh-interval=0",
                "",
            ]
        )
    )
    log = open(conf_dir / "pdns.log", "wb")  # noqa: SIM115 - pdns writes to it until stopped
    proc = subprocess.Popen(
        ["pdns_server", f"--config-dir={conf_dir}"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = PowerDNSServer(dns_port, f"http://127.0.0.1:{api_port}", key, proc)
    deadline = time.monotonic() + 20
    while True:
        try:
            req = urllib.request.Request(f"{server.api_url}/api/v1/servers", headers={"X-API-Key": key})
            with urllib.request.urlopen(req, timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pdns_server failed: {(conf_dir / 'pdns.log').read_text()[-2000:]}") from None
            time.sleep(0.1)
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def pdns_node_env(powerdns, monkeypatch):
    """The local node's PowerDNS is the test server (the node side reads its own environment)."""
    monkeypatch.setenv("MPANEL_PDNS_API_URL", powerdns.api_url)
    monkeypatch.setenv("MPANEL_PDNS_API_KEY", powerdns.api_key)
    return powerdns
