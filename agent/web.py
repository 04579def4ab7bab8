"""Websites on nginx, node side (docs/architecture.md, "A request, end to end").

Layout under ``<node root>/web``:
    sites/<id>.conf        one server block per site (the node's nginx.conf includes ``sites/*.conf``)
    www/<id>/              the site's files (its file manager root); the document root lies inside
    status/<id>/           the suspension page
    ssl/<id>.crt|.key      the site's self-signed certificate (until one is installed)
    ssl/<id>.<sha>.crt|.key a certificate the panel installed (``tls`` in the spec: issued by ACME or
                           uploaded); the key 0600 from its first byte. The vhost names the files, so
                           a new pair is only served once ``nginx -t`` accepted the vhost naming it.
    ssl/<id>.json          what the site serves (issuer, serial, dates, files)
    acme/<id>/.well-known/acme-challenge/<token>  HTTP-01 challenge answers (``agent.certs``), served at
                           ``/.well-known/acme-challenge/`` over plain HTTP, before the site has TLS
    trash/<id>/            files of a deleted site, kept for the grace period
    stage/                 candidate configurations checked by ``nginx -t`` before they are swapped in
    logs/shield.log        the requests Shield denied (``agent.shield``), read back by the reporter

Every change renders the new server block, checks the whole configuration (the node's
``nginx.conf`` with the candidate in place of the live vhost) with ``nginx -t``, and only then
renames it into ``sites/`` and reloads. A configuration that fails the check is never swapped in;
if the reload fails the previous server block is put back.

The node's main configuration is ``$MPANEL_NGINX_CONF`` (it must include ``<root>/web/sites/*.conf``);
without it the agent writes a self-contained one under ``<root>/web/nginx.conf``. Listen
addresses: ``$MPANEL_NGINX_LISTEN`` (default ``80``) and ``$MPANEL_NGINX_LISTEN_SSL`` (``443``).
"""

from __future__ import annotations

import datetime
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from string import Template

from . import bandwidth, pem, shield
from . import php as php_pools
from .errors import AgentError
from .registry import OPERATIONS, Node
from .validate import Invalid
from .validate import web as rules

SITE_ID_RE = rules.SITE_ID_RE
TEMPLATE = Path(__file__).with_name("templates") / "nginx_vhost.conf"
SUSPENDED_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Website suspended</title></head>
<body><h1>This website is suspended</h1><p>Please contact the hosting provider.</p></body></html>
"""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise AgentError(message, permanent=True)


def validate_spec(spec: dict) -> dict:
    """The site as the panel describes it, checked again here by the rules the panel applied
    (agent/validate/web.py): the node trusts nothing it renders."""
    try:
        return _validate_spec(spec)
    except Invalid as exc:
        raise AgentError(f"bad {exc.field or 'site'}: {exc.message}", permanent=True) from None


def _validate_spec(spec: dict) -> dict:
    _check(isinstance(spec, dict), "site spec must be an object")
    site_id = rules.site_id(str(spec.get("id", "")))
    domains = spec.get("domains") or []
    _check(isinstance(domains, list) and 0 < len(domains) <= 100, "1-100 domains are required")
    domains = [rules.hostname(d) for d in domains]
    _check(len(set(domains)) == len(domains), "a domain is named twice")
    status = spec.get("status", "active")
    _check(status in ("active", "suspended"), f"bad status {status!r}")
    docroot = rules.document_root(spec.get("document_root") or "public")
    php = spec.get("php_version") or None
    if php is not None:
        php = rules.php_version(php)
    www = spec.get("www_redirect") or "none"
    _check(www in ("none", "www", "non-www"), f"bad www_redirect {www!r}")
    pages = spec.get("error_pages") or {}
    _check(isinstance(pages, dict), "error_pages must be an object")
    pages = {rules.error_code(code): rules.page(page) for code, page in pages.items()}
    redirects = spec.get("redirects") or []
    _check(isinstance(redirects, list) and len(redirects) <= 200, "redirects must be a list")
    for r in redirects:
        _check(isinstance(r, dict), "a redirect is an object")
    redirects = [
        {"source": rules.page(r.get("source"), "redirects"), "target": rules.redirect_target(r.get("target")),
         "code": rules.redirect_code(r.get("code", 301))}
        for r in redirects
    ]  # fmt: skip
    user = spec.get("system_user") or ""
    if user:
        user = rules.system_user(user)
    try:
        shield_rules = shield.validate(spec.get("shield"))
    except shield.ShieldError as exc:
        raise AgentError(str(exc), permanent=True) from exc
    tls = _validate_tls(spec.get("tls"))
    return {
        "id": site_id,
        "domains": domains,
        "status": status,
        "document_root": docroot,
        "php_version": php,
        "https": bool(spec.get("https")),
        "redirect_https": bool(spec.get("redirect_https")) and bool(spec.get("https")),
        "www_redirect": www,
        "error_pages": dict(sorted(pages.items())),
        "redirects": redirects,
        "system_user": user,
        "shield": shield_rules,
        "tls": tls,
    }


def _validate_tls(tls) -> dict | None:
    """A certificate to serve instead of the self-signed one: the leaf then its chain, and its key,
    checked (key matches, chain in order, dates) before anything is written. The key stays in memory
    until it is written 0600; it is never part of an answer or a message."""
    if not tls:
        return None
    _check(isinstance(tls, dict), "tls must be an object")
    try:
        facts = pem.check_bundle(tls.get("certificate"), "", tls.get("private_key"))
    except pem.BadBundle as exc:
        raise AgentError(f"bad tls {exc.field}: {exc.message}", permanent=True) from None
    return {
        "certificate": str(tls["certificate"]),
        "private_key": str(tls["private_key"]),
        "hsts": bool(tls.get("hsts")),
        # OCSP stapling only where it can work: the leaf names a responder and its issuer is in the
        # chain (nginx asks the responder about the leaf with the issuer's key hash).
        "staple": bool(facts["ocsp"]) and bool(facts["chain"]),
        "facts": {k: facts[k] for k in ("names", "issuer", "serial", "not_before", "not_after", "sha256")},
    }


def self_signed(domains: list[str], days: int = 365) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0].lstrip("*."))])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_atomic(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class WebRuntime:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.sites = self.root / "sites"
        self.www = self.root / "www"
        self.status_dir = self.root / "status"
        self.ssl = self.root / "ssl"
        self.trash = self.root / "trash"
        self.stage = self.root / "stage"
        self.shield_log = shield.log_path(self.root)
        self.php = php_pools.PhpRuntime(self.root / "php")
        self._lock = threading.Lock()  # one configuration change at a time on this node
        self._tls_files: dict[str, tuple[Path, Path]] = {}  # site id -> the pair its next render names

    # --- settings read at call time (the agent's environment) ------------------------------------
    @property
    def nginx(self) -> str:
        return os.environ.get("MPANEL_NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"

    @property
    def listen(self) -> str:
        return os.environ.get("MPANEL_NGINX_LISTEN", "80")

    @property
    def listen_ssl(self) -> str:
        return os.environ.get("MPANEL_NGINX_LISTEN_SSL", "443")

    def main_conf(self) -> Path:
        configured = os.environ.get("MPANEL_NGINX_CONF")
        if configured:
            return Path(configured)
        conf = self.root / "nginx.conf"
        if not conf.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            run = self.root / "run"
            run.mkdir(exist_ok=True)
            _write_atomic(conf, default_main_conf(self.sites, run))
        return conf

    def site_dir(self, site_id: str) -> Path:
        _check(bool(SITE_ID_RE.match(site_id)), f"bad site id {site_id!r}")
        return self.www / site_id

    # --- nginx ------------------------------------------------------------------------------------
    def _nginx(self, *args: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.nginx, *args], capture_output=True, text=True, timeout=60)
        except FileNotFoundError as exc:
            raise AgentError("nginx is not installed on this node", permanent=True) from exc

    def _test(self, conf: Path) -> tuple[bool, str]:
        result = self._nginx("-t", "-q", "-c", str(conf))
        return result.returncode == 0, (result.stderr or result.stdout).strip()[-2000:]

    def _reload(self, conf: Path) -> bool:
        """Reload a running nginx; a stopped one is fine (it reads the files when it starts).

        ``nginx -s reload`` only signals the master and returns: until the master has started workers on
        the new configuration and told the old ones to stop, a request (an ACME validation right after a
        new vhost, a customer's first visit) can still meet the old one. So the reload waits for that."""
        pid_file = _pid_file(conf)
        if not _running(pid_file):
            return False
        master = _pid(pid_file)
        before = _children(master)
        result = self._nginx("-c", str(conf), "-s", "reload")
        if result.returncode != 0:
            raise AgentError(f"nginx reload failed: {(result.stderr or result.stdout).strip()[-1000:]}")
        _wait_for_new_workers(master, before)
        return True

    def _swap(self, site_id: str, text: str | None) -> dict:
        """Put ``text`` in as the site's server block (None: remove it), checked before and rolled back."""
        self.sites.mkdir(parents=True, exist_ok=True)
        live = self.sites / f"{site_id}.conf"
        previous = live.read_text() if live.exists() else None
        if previous == text:
            return {"changed": False, "reloaded": False}
        conf = self.main_conf()
        # The candidate: every live vhost with this one replaced, under the node's own main configuration.
        stage = self.stage / f"{site_id}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(stage, ignore_errors=True)
        staged_sites = stage / "sites"
        staged_sites.mkdir(parents=True)
        # What every site's Shield rules use: written with the first site that has any.
        shared = self.sites / shield.SHARED_CONF
        with_shield = shared.exists() or (text is not None and shield.LOG_FORMAT in text)
        try:
            for other in self.sites.glob("*.conf"):
                if other.name != live.name:
                    shutil.copy2(other, staged_sites / other.name)
            if with_shield:
                (staged_sites / shared.name).write_text(shield.SHARED_TEXT)
            if text is not None:
                (staged_sites / live.name).write_text(text)
            main_text = conf.read_text()
            marker = f"{self.sites}/"
            if marker not in main_text:
                raise AgentError(f"{conf} does not include {self.sites}/*.conf", permanent=True)
            candidate = stage / "nginx.conf"
            candidate.write_text(main_text.replace(marker, f"{staged_sites}/"))
            ok, output = self._test(candidate)
            if not ok:
                raise AgentError(f"nginx -t refused the new configuration: {output}", permanent=True)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        if with_shield and (not shared.exists() or shared.read_text() != shield.SHARED_TEXT):
            _write_atomic(shared, shield.SHARED_TEXT)
        if text is None:
            live.unlink(missing_ok=True)
        else:
            _write_atomic(live, text)
        try:
            ok, output = self._test(conf)
            if not ok:
                raise AgentError(f"nginx -t failed after the swap: {output}", permanent=True)
            reloaded = self._reload(conf)
        except AgentError:
            if previous is None:
                live.unlink(missing_ok=True)
            else:
                _write_atomic(live, previous)
            raise
        return {"changed": True, "reloaded": reloaded}

    # --- rendering --------------------------------------------------------------------------------
    def render(self, spec: dict) -> str:
        site_id = spec["id"]
        suspended = spec["status"] == "suspended"
        rules = None if suspended else spec.get("shield")  # a suspended site answers its 503 page to all
        # Every server of the site logs what it served (agent/bandwidth.py reads the bytes back).
        shield_server = shield.render_server(site_id, rules, self.shield_log) + bandwidth.server_lines(
            self.root, site_id
        )
        domains = list(spec["domains"])
        redirect_servers = ""
        if spec["www_redirect"] != "none" and not domains[0].startswith("*."):
            bare = domains[0].removeprefix("www.")
            canonical, other = (f"www.{bare}", bare) if spec["www_redirect"] == "www" else (bare, f"www.{bare}")
            if canonical not in domains:
                domains.insert(1, canonical)
            domains = [d for d in domains if d != other]
            scheme = "https" if spec["redirect_https"] else "$scheme"
            redirect_servers = (
                f"server {{\n    listen {self.listen};\n"
                + (f"    listen {self.listen_ssl} ssl;\n" if spec["https"] else "")
                + f"    server_name {other};\n"
                + shield_server
                + (self._ssl_lines(site_id) if spec["https"] else "")
                + f"    return 301 {scheme}://{canonical}$request_uri;\n}}\n"
            )
        ssl = self._ssl_lines(site_id) if spec["https"] else ""
        https_redirect = ""
        if spec["redirect_https"]:
            # Everything but an ACME challenge: a renewal must validate over plain HTTP.
            https_redirect = (
                '    set $mp_to_https "";\n'
                '    if ($scheme = http) {\n        set $mp_to_https "1";\n    }\n'
                '    if ($uri ~ "^/\\.well-known/acme-challenge/") {\n        set $mp_to_https "";\n    }\n'
                "    if ($mp_to_https) {\n        return 301 https://$host$request_uri;\n    }\n"
            )
        if spec["https"] and spec.get("tls") and spec["tls"]["hsts"]:
            # Only with a certificate a CA issued: HSTS over a self-signed one would lock visitors out.
            ssl += '    add_header Strict-Transport-Security "max-age=31536000" always;\n'
        if spec["https"] and spec.get("tls") and spec["tls"].get("staple"):
            ssl += self._stapling_lines()
        error_pages = "".join(f"    error_page {code} {page};\n" for code, page in spec["error_pages"].items())
        redirects = "".join(
            f"    location = {r['source']} {{\n        return {r['code']} {r['target']};\n    }}\n"
            for r in spec["redirects"]
        )
        if suspended:
            root = self.status_dir / site_id
            error_pages = redirects = ""
            body = (
                "    error_page 503 /suspended.html;\n"
                "    location = /suspended.html {\n        internal;\n    }\n"
                "    location / {\n        return 503;\n    }\n"
            )
        else:
            root = self.site_dir(site_id) / spec["document_root"]
            body = "    location / {\n        try_files $uri $uri/ =404;\n    }\n"
            if spec["php_version"]:
                sock = self.php.socket(site_id)
                body += (
                    "    location ~ \\.php$ {\n        try_files $uri =404;\n"
                    "        include /etc/nginx/fastcgi_params;\n"
                    "        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"
                    f"        fastcgi_pass unix:{sock};\n    }}\n"
                )
        return Template(TEMPLATE.read_text()).substitute(
            site_id=site_id,
            status=spec["status"],
            acme=self.acme_location(site_id),
            redirect_servers=redirect_servers,
            shield_http=shield.render_http(site_id, rules),
            shield=shield_server,
            listen=self.listen,
            listen_ssl=f"    listen {self.listen_ssl} ssl;\n" if spec["https"] else "",
            server_names=" ".join(domains),
            document_root=root,
            php_index=" index.php" if spec["php_version"] and not suspended else "",
            ssl=ssl,
            https_redirect=https_redirect,
            error_pages=error_pages,
            redirects=redirects,
            body=body,
        )

    def acme_root(self, site_id: str) -> Path:
        """The root the site's HTTP-01 answers are served from: ``<it>/.well-known/acme-challenge/<token>``."""
        _check(bool(SITE_ID_RE.match(site_id)), f"bad site id {site_id!r}")
        return self.root / "acme" / site_id

    def acme_dir(self, site_id: str) -> Path:
        return self.acme_root(site_id) / ".well-known" / "acme-challenge"

    def acme_location(self, site_id: str) -> str:
        """HTTP-01 answers, before any other location and without TLS (RFC 8555 8.3)."""
        return (
            "    location ^~ /.well-known/acme-challenge/ {\n"
            f"        root {self.acme_root(site_id)};\n"
            "        default_type text/plain;\n        try_files $uri =404;\n    }\n"
        )

    def _stapling_lines(self) -> str:
        """OCSP stapling: nginx fetches the responder's answer and sends it in the handshake, verified
        against the public roots (the responder's signer chains to them through the served chain)."""
        lines = "    ssl_stapling on;\n    ssl_stapling_verify on;\n"
        roots = Path(os.environ.get("MPANEL_TLS_ROOTS", "/etc/ssl/certs/ca-certificates.crt"))
        if roots.is_file():
            lines += f"    ssl_trusted_certificate {roots};\n"
        return lines

    def _ssl_lines(self, site_id: str) -> str:
        crt, key = self._tls_files.get(site_id) or (self.ssl / f"{site_id}.crt", self.ssl / f"{site_id}.key")
        return f"    ssl_certificate {crt};\n    ssl_certificate_key {key};\n"

    def _install_certificate(self, spec: dict) -> dict:
        """The panel's certificate, under names of its own fingerprint: the live vhost keeps naming
        the previous pair until the new vhost passed ``nginx -t`` and was swapped in."""
        tls, site_id = spec["tls"], spec["id"]
        facts = tls["facts"]
        tag = facts["sha256"][:16]
        crt, key = self.ssl / f"{site_id}.{tag}.crt", self.ssl / f"{site_id}.{tag}.key"
        if not key.exists() or key.read_bytes() != tls["private_key"].encode():
            _write_atomic(key, tls["private_key"], 0o600)  # the key first: no certificate without its key
        if not crt.exists() or crt.read_text() != tls["certificate"]:
            _write_atomic(crt, tls["certificate"])
        self._tls_files[site_id] = (crt, key)
        return {"domains": sorted(spec["domains"]), "source": "installed", **facts, "crt": crt.name}

    def _forget_old_certificates(self, site_id: str, keep: set[str]) -> None:
        for path in self.ssl.glob(f"{site_id}.*.crt"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
                path.with_suffix(".key").unlink(missing_ok=True)

    def _ensure_certificate(self, spec: dict) -> dict:
        self.ssl.mkdir(parents=True, exist_ok=True)
        os.chmod(self.ssl, 0o700)
        if spec.get("tls"):
            return self._install_certificate(spec)
        self._tls_files.pop(spec["id"], None)
        crt, key, meta = (self.ssl / f"{spec['id']}{ext}" for ext in (".crt", ".key", ".json"))
        wanted = sorted(spec["domains"])
        try:
            current = json.loads(meta.read_text())
        except (OSError, ValueError):
            current = {}
        if current.get("source") == "installed":
            current = {}
        if current.get("domains") != wanted or not crt.exists() or not key.exists():
            cert_pem, key_pem = self_signed(spec["domains"])
            _write_atomic(key, key_pem, 0o600)
            _write_atomic(crt, cert_pem)
            current = {
                "domains": wanted,
                "issuer": "self-signed",
                "sha256": hashlib.sha256(cert_pem).hexdigest(),
                "not_after": int(time.time()) + 365 * 86400,
            }
            _write_atomic(meta, json.dumps(current))
        return current

    # --- operations -------------------------------------------------------------------------------
    def site_ensure(self, spec: dict) -> dict:
        spec = validate_spec(spec)
        site_id = spec["id"]
        with self._lock:
            home = self.site_dir(site_id)
            docroot = home / spec["document_root"]
            created = not home.exists()
            docroot.mkdir(parents=True, exist_ok=True)
            user = php_pools.site_user(spec["system_user"], home) if spec["system_user"] else None
            if created:
                (docroot / "index.html").write_text(f"<!doctype html><title>{spec['domains'][0]}</title>\n")
            if user and (created or _owner(home) != user):
                _chown_tree(home, user)
            if user:
                # Only the site's user and the web server's group get into the site's files.
                _set_group(home, self.php.listen_group(), 0o750)
            status = self.status_dir / site_id
            status.mkdir(parents=True, exist_ok=True)
            self.shield_log.parent.mkdir(parents=True, exist_ok=True)  # nginx -t opens the log
            bandwidth.log_dir(self.root).mkdir(parents=True, exist_ok=True)  # and the bytes log
            _write_atomic(status / "suspended.html", SUSPENDED_PAGE)
            certificate = self._ensure_certificate(spec) if spec["https"] else None
            self.acme_dir(site_id).mkdir(parents=True, exist_ok=True)
            php = None
            if spec["php_version"] and spec["status"] == "active":
                # The pool first: nginx must never pass requests to a socket that is not coming.
                php = self.php.pool_ensure(site_id=site_id, version=spec["php_version"],
                                           user=user or self.php.default_user(), home=home)  # fmt: skip
            result = self._swap(site_id, self.render(spec))
            if certificate is not None:
                # Served now: record it, and drop the pairs no vhost names any more.
                _write_atomic(self.ssl / f"{site_id}.json", json.dumps(certificate))
                self._forget_old_certificates(site_id, {certificate.get("crt", "")})
            if not php:
                # A static or suspended site runs no PHP code at all.
                php = {"php_version": None, **self.php.pool_remove(site_id)}
        return {"id": site_id, "status": spec["status"], "certificate": certificate, "system_user": user,
                "php": php, **result}  # fmt: skip

    def site_remove(self, site_id: str) -> dict:
        """Remove the vhost and the PHP pool; the files go to ``trash/`` until ``site_purge``."""
        home = self.site_dir(site_id)
        with self._lock:
            result = self._swap(site_id, None)
            self.php.pool_remove(site_id)
            moved = False
            if home.exists():
                self.trash.mkdir(parents=True, exist_ok=True)
                target = self.trash / site_id
                shutil.rmtree(target, ignore_errors=True)
                os.replace(home, target)
                moved = True
            shutil.rmtree(self.status_dir / site_id, ignore_errors=True)
            for ext in (".crt", ".key", ".json"):
                (self.ssl / f"{site_id}{ext}").unlink(missing_ok=True)
            if self.ssl.exists():
                self._forget_old_certificates(site_id, set())
            shutil.rmtree(self.acme_root(site_id), ignore_errors=True)
            self._tls_files.pop(site_id, None)
        return {"id": site_id, "state": "absent", "files_in_trash": moved or (self.trash / site_id).exists(), **result}

    def site_purge(self, site_id: str, system_user: str = "") -> dict:
        home = self.site_dir(site_id)  # validates the id
        target = self.trash / site_id
        existed = target.exists()
        shutil.rmtree(target, ignore_errors=True)
        # The user's home is still recorded as the site's folder: only then is it ours to delete.
        user_removed = php_pools.remove_user(system_user, home) if system_user else False
        return {"id": site_id, "purged": existed, "user_removed": user_removed}

    def site_state(self, site_id: str) -> dict:
        home = self.site_dir(site_id)
        vhost = self.sites / f"{site_id}.conf"
        return {
            "id": site_id,
            "vhost": vhost.exists(),
            "files": home.exists(),
            "in_trash": (self.trash / site_id).exists(),
        }

    def site_disk_usage(self, site_id: str) -> dict:
        """The disk the site's files take, in bytes, as ``du`` counts it (allocated blocks; hard
        links once). A site with no files yet takes 0."""
        home = self.site_dir(site_id)
        if not home.exists():
            return {"id": site_id, "bytes": 0}
        try:
            result = subprocess.run(["du", "-s", "-B1", "-x", str(home)], capture_output=True, text=True, timeout=300)
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            raise AgentError(f"du could not measure the site: {exc}") from exc
        # du exits 1 when a file vanished during the walk; its total is still the best measure.
        first = (result.stdout.split() or [""])[0]
        if not first.isdigit():
            raise AgentError(f"du could not measure the site: {result.stderr.strip()[:200]}")
        return {"id": site_id, "bytes": int(first)}


# --- the site operations (agent.dispatch calls them by name) --------------------------------------


def _site_id(args: dict) -> str:
    site_id = args.get("id")
    if not isinstance(site_id, str):
        raise AgentError("a site id is required", permanent=True)
    return site_id


@OPERATIONS.register("site_ensure")
def site_ensure(node: Node, args: dict) -> dict:
    return node.web.site_ensure(args.get("spec") or {})


@OPERATIONS.register("site_remove")
def site_remove(node: Node, args: dict) -> dict:
    site_id = _site_id(args)
    return node.web.site_remove(site_id)


@OPERATIONS.register("site_purge")
def site_purge(node: Node, args: dict) -> dict:
    site_id = _site_id(args)
    return node.web.site_purge(site_id, str(args.get("system_user") or ""))


@OPERATIONS.register("site_state")
def site_state(node: Node, args: dict) -> dict:
    site_id = _site_id(args)
    return node.web.site_state(site_id)


@OPERATIONS.register("site_disk_usage")
def site_disk_usage(node: Node, args: dict) -> dict:
    return node.web.site_disk_usage(_site_id(args))


def default_main_conf(sites: Path, run: Path, *, user: str = "", default_listen: str = "") -> str:
    """nginx's main configuration for a node without its own: ``sites``' vhosts, run files under
    ``run``. ``user`` sets the workers' user (nginx's default is ``nobody``); ``default_listen`` adds a
    catch-all server answering 404 there, for names no site claims (throwaway nodes of tests and
    benchmarks, where no other server answers the port)."""
    head = f"user {user};\n" if user else ""
    catch_all = (
        f"    server {{\n        listen {default_listen} default_server;\n        return 404;\n    }}\n"
        if default_listen
        else ""
    )
    return f"""# Written by the mPanel agent; set MPANEL_NGINX_CONF to use the node's own nginx.conf instead.
{head}worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    server_names_hash_bucket_size 128;
    variables_hash_max_size 8192;  # Shield declares one variable per site with address rules
{catch_all}    include {sites}/*.conf;
}}
"""


def _pid_file(conf: Path) -> Path | None:
    match = re.search(r"^\s*pid\s+([^;]+);", conf.read_text(), re.M)
    return Path(match.group(1).strip()) if match else Path("/run/nginx.pid")


def _pid(pid_file: Path | None) -> int:
    try:
        return int(pid_file.read_text().strip()) if pid_file else 0
    except (OSError, ValueError):
        return 0


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc; empty where there is none)."""
    found: set[int] = set()
    if pid <= 0:
        return found
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.add(int(stat.parent.name))
    return found


def _wait_for_new_workers(master: int, before: set[int], timeout: float = 10.0) -> None:
    """Until the master has a worker that was not there before the reload and none of the old ones is
    left (an old worker stops accepting as soon as it is told; one still finishing a long request is
    left to finish after ``timeout``, as nginx itself would)."""
    if master <= 0 or not before:  # no master with workers (master_process off): nothing to wait for
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _children(master)
        if now - before and not (now & before):
            return
        time.sleep(0.02)


def _running(pid_file: Path | None) -> bool:
    try:
        pid = int(pid_file.read_text().strip()) if pid_file else 0
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> str:
    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except KeyError:
        return ""


def _chown_tree(path: Path, user: str) -> None:
    """Give the site's files to its system user (symlinks themselves, never what they point at)."""
    entry = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.lchown(name, entry.pw_uid, entry.pw_gid)


def _set_group(path: Path, group: str, mode: int) -> None:
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return
    os.chown(path, -1, gid)
    os.chmod(path, mode)
