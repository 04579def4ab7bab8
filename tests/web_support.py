"""Fixtures for websites and files: a node root per test and a real nginx on loopback ports.

``nginx_node`` writes an nginx.conf of its own under ``tmp_path`` (pid, logs and temp paths there,
a default server that answers 404, ``include <node root>/web/sites/*.conf``), points the node
side at it (``MPANEL_NGINX_CONF``, ``MPANEL_NGINX_LISTEN*``), starts ``nginx -c`` on free loopback
ports, and stops it by its pid when the test ends.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from agent.web import default_main_conf
from apps.nodes.models import Node
from apps.websites import services as website_services
from apps.websites.models import Website


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web_root(tmp_path, settings, monkeypatch) -> Path:
    """A node root of this test's own (the local driver works under it)."""
    root = tmp_path / "node"
    settings.MPANEL_NODE_ROOT = root
    monkeypatch.setenv("MPANEL_NODE_ROOT", str(root))
    return root


@dataclass
class Nginx:
    root: Path
    conf: Path
    http_port: int
    https_port: int
    proc: subprocess.Popen

    def get(self, host: str, path: str = "/", *, https: bool = False) -> tuple[int, str, dict]:
        if https:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection("127.0.0.1", self.https_port, timeout=10, context=context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host})
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace"), dict(response.getheaders())
        finally:
            conn.close()

    def wait_until(
        self, host: str, status: int, path: str = "/", contains: str = "", timeout: float = 10, https: bool = False
    ) -> tuple[int, str, dict]:
        """A reload hands over to new workers: wait until they answer the new way."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get(host, path, https=https)
            if (answer[0] == status and contains in answer[1]) or time.monotonic() > deadline:
                return answer
            time.sleep(0.05)


@pytest.fixture
def nginx_node(web_root, tmp_path, monkeypatch):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.fail("nginx is needed: run the tests with `make test` (it installs nginx-light)")
    run = tmp_path / "nginx"
    run.mkdir()
    sites = web_root / "web" / "sites"
    sites.mkdir(parents=True)
    http_port, https_port = free_port(), free_port()
    conf = run / "nginx.conf"
    conf.write_text(default_main_conf(sites, run, user="root", default_listen=f"127.0.0.1:{http_port}"))
    monkeypatch.setenv("MPANEL_NGINX_CONF", str(conf))
    monkeypatch.setenv("MPANEL_NGINX_LISTEN", f"127.0.0.1:{http_port}")
    monkeypatch.setenv("MPANEL_NGINX_LISTEN_SSL", f"127.0.0.1:{https_port}")
    proc = subprocess.Popen(
        [binary, "-c", str(conf), "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", http_port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"nginx did not start: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.05)
    yield Nginx(root=web_root, conf=conf, http_port=http_port, https_port=https_port, proc=proc)
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def web_node_in(fx, hostname: str = "web-1", **extra) -> Node:
    values = {"vcpu": Decimal("8"), "memory_mb": 8192, "disk_gb": 100, "max_pods": 0, "roles": ["web"], **extra}
    with fx.scope():
        node = Node.objects.filter(hostname=hostname).first()
        return node or Node.objects.create(tenant=fx.tenant, hostname=hostname, **values)


def website_in(fx, seq, **extra) -> Website:
    """A website row (and its hostnames) made by the service; its provision job is stored, not run."""
    node = extra.pop("node", None) or web_node_in(fx)
    with fx.scope():
        return website_services.website_create(
            tenant=fx.tenant, primary_domain=f"site{seq}-{fx.tenant.pk.hex[:8]}.example.com", node=node, **extra
        )
