"""``make bench`` (``BENCH_ONLY=ssl``): ``POST /api/v1/enterprise/ssl`` (HTTP-01) to the website serving the valid
certificate, next to a bare ``acme`` library issuance of the same name against the same CA (the floor).

Runs inside bench/suite.py's Django (PostgreSQL); needs Debian's ``pebble`` and ``nginx``. Everything
runs on loopback under a temporary folder: a node root of its own, nginx serving it (as the test
fixture does), pebble (``PEBBLE_VA_NOSLEEP=1``: no artificial validation delay) and, for pebble's
name lookups, a small DNS responder that answers every A question with 127.0.0.1 (the names' DNS is
not what is measured). For each of ``BENCH_SSL_RUNS`` (3) names, after an untimed warm-up that
registers the tenant's ACME account:

- panel: the API's POST (an ADMIN's token) → the ``ssl.certificate.issue`` job (order, HTTP-01
  answer put on the node, validation by pebble through nginx, finalisation, download, the key
  sealed) → ``ssl.certificate.install`` (vhost rendered, ``nginx -t``, reload) → a TLS handshake on
  nginx's HTTPS port that verifies the new serial against pebble's root. Jobs run in-process as they
  commit (``MPANEL_JOBS_EAGER``: the worker's ``run_job`` path without the broker hop, as the
  backups row does).
- floor: the same steps with the ``acme`` library alone (an account registered before timing): order,
  the HTTP-01 answer written where the same nginx serves it, ``answer_challenge``,
  ``poll_and_finalize``; no database, no install.

Prints figures (medians); never passes or fails on time. Not named ``ssl.py``: bench/suite.py runs
as a script, so bench/ is on ``sys.path`` and such a module would shadow the standard library's ``ssl``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from contextlib import ExitStack
from pathlib import Path

from agent.web import default_main_conf

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                tail = log.read_text()[-2000:] if log and log.exists() else ""
                raise RuntimeError(f"{what} did not start: {tail}") from None
            time.sleep(0.05)


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _Dns:
    """Answers every A question with 127.0.0.1 (UDP); other types: no answer."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import dns.message
        import dns.rdatatype
        import dns.rrset

        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
                answer = dns.message.make_response(query)
                for question in query.question:
                    if question.rdtype == dns.rdatatype.A:
                        answer.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", "127.0.0.1"))
                self.sock.sendto(answer.to_wire(), peer)
            except Exception as exc:  # a malformed packet: no answer, as a server under load would
                log.debug("bench DNS: unanswered packet from %s: %s", peer, exc)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
        self.sock.close()


def _nginx(work: Path, node_root: Path) -> tuple[subprocess.Popen, int, int]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    run = work / "nginx"
    run.mkdir()
    sites = node_root / "web" / "sites"
    sites.mkdir(parents=True)
    http_port, https_port = _free_port(), _free_port()
    conf = run / "nginx.conf"
    conf.write_text(default_main_conf(sites, run, user="root", default_listen=f"127.0.0.1:{http_port}"))
    os.environ["MPANEL_NGINX_CONF"] = str(conf)
    os.environ["MPANEL_NGINX_LISTEN"] = f"127.0.0.1:{http_port}"
    os.environ["MPANEL_NGINX_LISTEN_SSL"] = f"127.0.0.1:{https_port}"
    proc = subprocess.Popen([binary, "-c", str(conf), "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    _wait_port(http_port, proc, "nginx", run / "error.log")
    return proc, http_port, https_port


def _pebble_tls(directory: Path) -> Path:
    """A self-signed certificate for pebble's own HTTPS listener on 127.0.0.1 (it is its own trust)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mPanel bench pebble listener")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "cert.pem"


def _pebble(work: Path, http_port: int, dns_port: int) -> tuple[subprocess.Popen, str, Path, str]:
    directory = work / "pebble"
    directory.mkdir()
    bundle = _pebble_tls(directory)
    port, management = _free_port(), _free_port()
    config = {"pebble": {"listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{management}",
                         "certificate": str(directory / "cert.pem"), "privateKey": str(directory / "key.pem"),
                         "httpPort": http_port, "tlsPort": _free_port(), "ocspResponderURL": "",
                         "externalAccountBindingRequired": False}}  # fmt: skip
    (directory / "config.json").write_text(json.dumps(config))
    log = directory / "pebble.log"
    binary = shutil.which("pebble") or "/usr/bin/pebble"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [binary, "-config", str(directory / "config.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=directory, start_new_session=True,
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    _wait_port(port, proc, "pebble", log)
    context = ssl.create_default_context(cafile=str(bundle))
    with urllib.request.urlopen(f"https://127.0.0.1:{management}/roots/0", context=context, timeout=10) as answer:
        root = answer.read().decode()
    return proc, f"https://127.0.0.1:{port}/dir", bundle, root


def _served_serial(https_port: int, host: str, root_pem: str) -> int | None:
    """The serial nginx serves for ``host``, verified (chain and name) against ``root_pem``; None if not yet."""
    from cryptography import x509

    context = ssl.create_default_context(cadata=root_pem)
    try:
        with (
            socket.create_connection(("127.0.0.1", https_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
    except (OSError, ssl.SSLError):
        return None


def _through_the_panel(client, site, https_port: int, root_pem: str) -> float:
    from apps.ssl.models import Certificate

    t0 = time.perf_counter()
    answer = client.post("/api/v1/enterprise/ssl/", {"website": str(site.pk)}, format="json")
    assert answer.status_code == 201, answer.content
    cert = Certificate.all_tenants.get(pk=answer.json()["id"])
    assert cert.status == "valid", cert.last_error  # the jobs ran as they committed
    serial = int(cert.serial, 16)
    deadline = time.monotonic() + 30
    while _served_serial(https_port, site.primary_domain, root_pem) != serial:
        if time.monotonic() > deadline:
            raise RuntimeError(f"nginx does not serve {site.primary_domain}'s new certificate")
        time.sleep(0.01)
    return time.perf_counter() - t0


def _floor_client(directory_url: str, bundle: Path):
    import josepy as jose
    from acme import client, messages
    from cryptography.hazmat.primitives.asymmetric import ec

    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=jose.ES256, verify_ssl=str(bundle), user_agent="mPanel-bench-floor")
    acme = client.ClientV2(client.ClientV2.get_directory(directory_url, net), net)
    acme.net.account = acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    return acme


def _bare_acme(acme, name: str, challenge_dir: Path) -> float:
    from acme import challenges
    from acme import crypto_util as acme_crypto
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    t0 = time.perf_counter()
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    order = acme.new_order(acme_crypto.make_csr(key_pem, [name]))
    for authz in order.authorizations:
        challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = challb.response_and_validation(acme.net.key)
        challenge_dir.mkdir(parents=True, exist_ok=True)
        (challenge_dir / challb.chall.encode("token")).write_text(validation)
        acme.answer_challenge(challb, response)
    done = acme.poll_and_finalize(order, datetime.datetime.now() + datetime.timedelta(seconds=60))
    assert "BEGIN CERTIFICATE" in done.fullchain_pem
    return time.perf_counter() - t0


def run() -> dict:
    missing = [
        b
        for b in ("pebble", "nginx")
        if not (shutil.which(b) or Path(f"/usr/{'sbin' if b == 'nginx' else 'bin'}/{b}").exists())
    ]
    if missing:
        return {"skipped": f"{' and '.join(missing)} not installed (the test command installs them)"}
    from django.conf import settings
    from rest_framework.test import APIClient

    from apps.accounts.models import AuthToken
    from apps.accounts.models import User as UserModel
    from apps.jobs.models import Job, JobStatus
    from apps.nodes.models import Node
    from apps.tenancy.models import Membership, Tenant
    from apps.tenancy.roles import Role
    from apps.tenancy.scoping import tenant_scope
    from apps.websites import services as website_services

    runs = max(int(os.environ.get("BENCH_SSL_RUNS", "3")), 1)
    work = Path(tempfile.mkdtemp(prefix="mpanel-bench-ssl-"))
    node_root = work / "node"
    saved_env = {k: os.environ.get(k) for k in ("MPANEL_NODE_ROOT", "MPANEL_NGINX_CONF", "MPANEL_NGINX_LISTEN",
                                                "MPANEL_NGINX_LISTEN_SSL")}  # fmt: skip
    names = ("MPANEL_NODE_ROOT", "MPANEL_ACME_DIRECTORY", "MPANEL_ACME_CA_BUNDLE", "MPANEL_JOBS_EAGER",
             "MPANEL_ACME_VALIDATION_SECONDS")  # fmt: skip
    saved_settings = {k: getattr(settings, k, None) for k in names}
    panel, floor = [], []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        os.environ["MPANEL_NODE_ROOT"] = str(node_root)
        settings.MPANEL_NODE_ROOT = node_root
        dns_server = _Dns()
        stack.callback(dns_server.close)
        nginx, http_port, https_port = _nginx(work, node_root)
        stack.callback(_stop, nginx, signal.SIGQUIT)
        pebble, directory_url, bundle, root = _pebble(work, http_port, dns_server.port)
        stack.callback(_stop, pebble)
        settings.MPANEL_ACME_DIRECTORY, settings.MPANEL_ACME_CA_BUNDLE = directory_url, str(bundle)
        settings.MPANEL_ACME_VALIDATION_SECONDS = 60
        settings.MPANEL_JOBS_EAGER = True
        try:
            tenant = Tenant.objects.create(name=f"Bench SSL {time.time_ns()}")
            user = UserModel.objects.create_user(f"bench-ssl-{uuid.uuid4().hex[:12]}@mpanel.local",
                                                 "bench-password-123")  # fmt: skip
            Membership.objects.create(tenant=tenant, user=user, role=Role.ADMIN)
            _token, raw = AuthToken.issue(user=user, ttl=settings.MPANEL_TOKEN_TTL)
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_X_TENANT_ID=str(tenant.pk))
            with tenant_scope(tenant):
                node = Node.objects.create(tenant=tenant, hostname=f"bench-ssl-{tenant.pk.hex[:8]}", roles=["web"],
                                           vcpu=4, memory_mb=4096, disk_gb=50, max_pods=0)  # fmt: skip
                sites = [website_services.website_create(tenant=tenant, node=node, https=True,
                                                         primary_domain=f"s{i}.b{tenant.pk.hex[:10]}.example")
                         for i in range(runs + 1)]  # fmt: skip
            assert not Job.all_tenants.filter(tenant=tenant).exclude(status=JobStatus.SUCCEEDED).exists()
            acme = _floor_client(directory_url, bundle)
            for i, site in enumerate(sites):
                seconds = _through_the_panel(client, site, https_port, root)
                challenge_dir = node_root / "web" / "acme" / site.site_id / ".well-known" / "acme-challenge"
                floor_seconds = _bare_acme(acme, site.primary_domain, challenge_dir)
                if i:  # the first is the warm-up (it registered the tenant's account)
                    panel.append(seconds)
                    floor.append(floor_seconds)
        finally:
            for key, value in saved_settings.items():
                setattr(settings, key, value)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    p, f = statistics.median(panel), statistics.median(floor)
    return {
        "runs": runs,
        "issue_to_served_seconds": round(p, 3),
        "bare_acme_seconds": round(f, 3),
        "ratio_to_bare_acme": round(p / f, 2) if f else None,
        "issue_to_served_all": [round(s, 3) for s in panel],
        "bare_acme_all": [round(s, 3) for s in floor],
    }
