"""An EPP client (RFC 5730 protocol, 5731 domain, 5732 host, 5733 contact, 5734 TCP transport).

Transport (RFC 5734): one TLS connection; every message is a frame of a 4-byte big-endian length
(which counts the 4 bytes themselves) followed by that many bytes of XML. The server speaks first
(a ``<greeting>``); the client logs in, sends commands one at a time and logs out.

Every command carries a fresh ``clTRID`` and the answer must echo it (a mismatched answer is a
protocol error, never taken as the answer to another command). Result codes (RFC 5730 §3): 1xxx
succeed; 2xxx raise ``EppError`` with the server's own message. ``retryable`` says whether running
the job again may succeed: 2400 (command failed: a registry fault) and 2500/2502 (the server is
closing the session) may; a refusal of the request itself (2000-2308, 2501 authentication) will
not. A frame that is cut short, too long, not XML or not EPP is an ``EppProtocolError`` (retryable:
a broken connection is usually transient).

Parsing: the server is not trusted. Answers are parsed with the standard library's expat parser
with any DOCTYPE or entity declaration refused outright (EPP uses neither), so no entity expansion,
external entity or DTD fetch can happen; frames are capped at ``MAX_FRAME`` bytes before parsing.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from xml.parsers import expat

from .registrars import RegistrarError

EPP = "urn:ietf:params:xml:ns:epp-1.0"
DOMAIN = "urn:ietf:params:xml:ns:domain-1.0"
HOST = "urn:ietf:params:xml:ns:host-1.0"
CONTACT = "urn:ietf:params:xml:ns:contact-1.0"
NS = {"epp": EPP, "domain": DOMAIN, "host": HOST, "contact": CONTACT}
OBJECTS = (DOMAIN, HOST, CONTACT)

MAX_FRAME = 1024 * 1024  # no EPP answer of ours is near this; a larger header is a broken stream
HEADER = struct.Struct(">I")

# Result codes (RFC 5730 §3) whose failure may pass if the job runs again later.
RETRYABLE = {2400, 2500, 2502}
OBJECT_EXISTS = 2302
OBJECT_DOES_NOT_EXIST = 2303
AUTHORIZATION_ERROR = 2201


class EppError(RegistrarError):
    """The registry answered 2xxx. ``message`` is the server's own ``<msg>`` (and reason)."""

    code = "registrar_error"

    def __init__(self, message: str, *, result: int | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.retryable = (result in RETRYABLE) if retryable is None else retryable


class EppProtocolError(EppError):
    """The stream broke EPP's rules (framing, XML, no result): nothing the registry meant."""

    def __init__(self, message: str) -> None:
        super().__init__(f"EPP protocol error: {message}", retryable=True)


# --- XML ------------------------------------------------------------------------------------------


def _refuse(*_args) -> None:
    raise EppProtocolError("the server sent a DOCTYPE or an entity declaration")


def _qualified(name: str) -> str:
    # expat names a namespaced element "uri}local" (namespace_separator "}"): ElementTree's "{uri}local".
    return "{" + name if "}" in name else name


def parse(data: bytes) -> ET.Element:
    """Parse one frame's XML, refusing DTDs and entities (see the module's docstring).

    expat directly (ElementTree's C parser hides its handlers), building ElementTree elements: the
    handlers refuse what defusedxml refuses (a DOCTYPE, entity declarations, external entities),
    and expat >= 2.4.1 bounds entity amplification besides. No new dependency for the same guarantee."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.StartElementHandler = lambda tag, attrs: builder.start(
        _qualified(tag), {_qualified(k): v for k, v in attrs.items()}
    )
    parser.EndElementHandler = lambda tag: builder.end(_qualified(tag))
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    try:
        parser.Parse(data, True)
        root = builder.close()
    except expat.ExpatError as exc:
        raise EppProtocolError(f"the answer is not XML ({exc})") from exc
    except AssertionError as exc:  # TreeBuilder: nothing or an unclosed element was built
        raise EppProtocolError("the answer is not XML (no document)") from exc
    if root.tag != f"{{{EPP}}}epp":
        raise EppProtocolError(f"the answer is not an EPP message (root {root.tag[:80]!r})")
    return root


def _el(parent: ET.Element | None, ns: str, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    name = f"{{{ns}}}{tag}"
    node = ET.Element(name, attrs) if parent is None else ET.SubElement(parent, name, attrs)
    if text is not None:
        node.text = text
    return node


def _document() -> tuple[ET.Element, ET.Element]:
    root = _el(None, EPP, "epp")
    return root, root


def serialize(root: ET.Element) -> bytes:
    ET.register_namespace("", EPP)
    ET.register_namespace("domain", DOMAIN)
    ET.register_namespace("host", HOST)
    ET.register_namespace("contact", CONTACT)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


# --- answers --------------------------------------------------------------------------------------


@dataclass
class Response:
    code: int
    message: str
    cl_trid: str | None
    sv_trid: str | None
    root: ET.Element = field(repr=False)

    @property
    def res_data(self) -> ET.Element | None:
        return self.root.find("epp:response/epp:resData", NS)

    def find(self, path: str) -> ET.Element | None:
        return self.root.find(f"epp:response/epp:resData/{path}", NS)

    def text(self, path: str) -> str | None:
        node = self.find(path)
        return node.text.strip() if node is not None and node.text else None


@dataclass
class Greeting:
    server_id: str
    versions: list[str]
    objects: list[str]
    extensions: list[str]


@dataclass
class DomainInfo:
    name: str
    roid: str | None
    statuses: list[str]
    registrant: str | None
    nameservers: list[str]
    created: date | None
    expires: date | None
    auth_info: str | None


def _date(value: str | None) -> date | None:
    # EPP dates are dateTime ("2000-04-03T22:00:00.0Z"): the day is what the panel keeps.
    return date.fromisoformat(value[:10]) if value else None


def response_of(root: ET.Element) -> Response:
    result = root.find("epp:response/epp:result", NS)
    if result is None:
        raise EppProtocolError("the answer has no <result>")
    try:
        code = int(result.get("code", ""))
    except ValueError as exc:
        raise EppProtocolError(f"the result code {result.get('code')!r} is not a number") from exc
    if not 1000 <= code <= 2599:
        raise EppProtocolError(f"the result code {code} is not an EPP code")
    msg = (result.findtext("epp:msg", "", NS) or "").strip()
    # A server adds why in <extValue><reason> (RFC 5730 §2.6): keep it, it is the useful part.
    reasons = [r.text.strip() for r in result.findall("epp:extValue/epp:reason", NS) if r.text and r.text.strip()]
    if reasons:
        msg = f"{msg} ({'; '.join(reasons)})"
    return Response(code=code, message=msg, cl_trid=root.findtext("epp:response/epp:trID/epp:clTRID", None, NS),
                    sv_trid=root.findtext("epp:response/epp:trID/epp:svTRID", None, NS), root=root)  # fmt: skip


# --- the client -----------------------------------------------------------------------------------


@dataclass
class EppConfig:
    host: str
    port: int
    client_id: str
    password: str
    cert_pem: str = ""  # a TLS client certificate (PEM, with its key when key_pem is empty)
    key_pem: str = ""
    ca_pem: str = ""  # trust this CA instead of the system's (a registry's OT&E CA, a test's own)
    timeout: float = 30.0
    trid_prefix: str = "MP"


class EppClient:
    """One EPP session. ``with EppClient(config) as epp:`` connects, reads the greeting and logs
    in; leaving the block logs out (best effort) and closes."""

    def __init__(self, config: EppConfig) -> None:
        self.config = config
        self.sock: ssl.SSLSocket | None = None
        self.greeting: Greeting | None = None
        self.sent: list[str] = []  # clTRIDs, in order (shown in errors, kept for support cases)
        self.broken = False  # the stream is out of step: no further command (not even logout) is sent

    # transport (RFC 5734)
    def _context(self) -> ssl.SSLContext:
        cfg = self.config
        ctx = ssl.create_default_context(cadata=cfg.ca_pem or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cfg.cert_pem:
            # load_cert_chain reads files only: a private temporary directory, gone after loading.
            with tempfile.TemporaryDirectory(prefix="mpanel-epp-") as tmp:
                cert = Path(tmp) / "cert.pem"
                cert.write_text(cfg.cert_pem)
                key = None
                if cfg.key_pem:
                    key = Path(tmp) / "key.pem"
                    key.touch(mode=0o600)
                    key.write_text(cfg.key_pem)
                ctx.load_cert_chain(str(cert), str(key) if key else None)
        return ctx

    def connect(self) -> Greeting:
        cfg = self.config
        try:
            raw = socket.create_connection((cfg.host, cfg.port), timeout=cfg.timeout)
        except OSError as exc:
            raise EppError(f"Cannot reach the registry at {cfg.host}:{cfg.port} ({exc}).", retryable=True) from exc
        try:
            self.sock = self._context().wrap_socket(raw, server_hostname=cfg.host)
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            # A certificate the registry refuses or we do not trust is configuration: retrying will not help.
            raise EppError(f"TLS with the registry failed ({exc}).", retryable=isinstance(exc, TimeoutError)) from exc
        self.sock.settimeout(cfg.timeout)
        try:
            self.greeting = self._greeting(self._read())
        except BaseException:
            self.close()
            raise
        return self.greeting

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def _recv_exact(self, n: int) -> bytes:
        assert self.sock is not None
        chunks, left = [], n
        while left:
            try:
                chunk = self.sock.recv(min(left, 65536))
            except TimeoutError as exc:
                self.broken = True
                raise EppProtocolError("the registry did not answer in time") from exc
            except ssl.SSLError as exc:
                self.broken = True
                if "ALERT" in str(exc.reason or "").upper():
                    # The registry refused our TLS (a certificate it wants, one it does not accept):
                    # configuration, which a retry will not change.
                    raise EppError(f"TLS with the registry failed ({exc}).", retryable=False) from exc
                raise EppProtocolError(f"the connection broke ({exc})") from exc
            except OSError as exc:
                self.broken = True
                raise EppProtocolError(f"the connection broke ({exc})") from exc
            if not chunk:
                self.broken = True
                raise EppProtocolError(f"the connection closed {left} bytes short of a frame")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _read(self) -> ET.Element:
        try:
            return self._read_frame()
        except EppProtocolError:
            self.broken = True
            raise

    def _read_frame(self) -> ET.Element:
        (length,) = HEADER.unpack(self._recv_exact(HEADER.size))
        if length <= HEADER.size:
            raise EppProtocolError(f"a frame header announced {length} bytes (at least 5 are needed)")
        if length > MAX_FRAME:
            raise EppProtocolError(f"a frame header announced {length} bytes (more than {MAX_FRAME})")
        return parse(self._recv_exact(length - HEADER.size))

    def _write(self, data: bytes) -> None:
        if self.sock is None:
            raise EppProtocolError("not connected")
        try:
            self.sock.sendall(HEADER.pack(len(data) + HEADER.size) + data)
        except (ssl.SSLError, OSError) as exc:
            raise EppProtocolError(f"the connection broke ({exc})") from exc

    @staticmethod
    def _greeting(root: ET.Element) -> Greeting:
        node = root.find("epp:greeting", NS)
        if node is None:
            raise EppProtocolError("the server did not greet (no <greeting>)")
        return Greeting(
            server_id=node.findtext("epp:svID", "", NS),
            versions=[v.text or "" for v in node.findall("epp:svcMenu/epp:version", NS)],
            objects=[v.text or "" for v in node.findall("epp:svcMenu/epp:objURI", NS)],
            extensions=[v.text or "" for v in node.findall("epp:svcMenu/epp:svcExtension/epp:extURI", NS)],
        )

    # commands (RFC 5730 §2.9)
    def _trid(self) -> str:
        # clTRID: 3 to 64 characters (RFC 5730 trIDStringType); unique per command.
        return f"{self.config.trid_prefix}-{uuid.uuid4().hex}"[:64]

    def command(self, build) -> Response:
        """Send one command: ``build(command_element)`` fills ``<command>``; the clTRID is added."""
        root, _ = _document()
        cmd = _el(root, EPP, "command")
        build(cmd)
        trid = self._trid()
        _el(cmd, EPP, "clTRID", trid)
        self.sent.append(trid)
        self._write(serialize(root))
        answer = self._read()
        try:
            response = response_of(answer)
        except EppProtocolError:
            self.broken = True
            raise
        if response.cl_trid is not None and response.cl_trid != trid:
            self.broken = True
            raise EppProtocolError(f"the answer is for {response.cl_trid!r}, not for {trid!r}")
        if response.code >= 2000:
            raise EppError(f"The registry refused: {response.code} {response.message}", result=response.code)
        return response

    def hello(self) -> Greeting:
        root, _ = _document()
        _el(root, EPP, "hello")
        self._write(serialize(root))
        return self._greeting(self._read())

    def login(self, *, new_password: str | None = None) -> Response:
        cfg = self.config
        offered = self.greeting.objects if self.greeting else []
        # Ask for the objects this client manages that the server offers; when it offers none of
        # them (RFC 5730's own greeting lists placeholders), ask for all and let the server answer.
        wanted = [uri for uri in OBJECTS if uri in offered] or list(OBJECTS)
        version = (self.greeting.versions[0] if self.greeting and self.greeting.versions else "1.0") or "1.0"

        def build(cmd: ET.Element) -> None:
            login = _el(cmd, EPP, "login")
            _el(login, EPP, "clID", cfg.client_id)
            _el(login, EPP, "pw", cfg.password)
            if new_password:
                _el(login, EPP, "newPW", new_password)
            options = _el(login, EPP, "options")
            _el(options, EPP, "version", version)
            _el(options, EPP, "lang", "en")
            svcs = _el(login, EPP, "svcs")
            for uri in wanted:
                _el(svcs, EPP, "objURI", uri)

        return self.command(build)

    def logout(self) -> Response:
        return self.command(lambda cmd: _el(cmd, EPP, "logout"))

    def __enter__(self) -> EppClient:
        self.connect()
        try:
            self.login()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.sock is not None and not self.broken:
                # Polite, not essential: the work is done (or refused) whatever logout answers.
                with contextlib.suppress(EppError):
                    self.logout()
        finally:
            self.close()

    # domain (RFC 5731)
    @staticmethod
    def _domain(cmd: ET.Element, verb: str) -> ET.Element:
        return _el(_el(cmd, EPP, verb), DOMAIN, verb)

    def domain_check(self, names: Iterable[str]) -> dict[str, tuple[bool, str]]:
        """{name: (available, reason)} for each name asked."""
        names = list(names)

        def build(cmd):
            check = self._domain(cmd, "check")
            for name in names:
                _el(check, DOMAIN, "name", name)

        response = self.command(build)
        out: dict[str, tuple[bool, str]] = {}
        for cd in response.root.findall("epp:response/epp:resData/domain:chkData/domain:cd", NS):
            node = cd.find("domain:name", NS)
            if node is None or not node.text:
                continue
            avail = node.get("avail", "").strip().lower() in ("1", "true")
            out[node.text.strip().lower()] = (avail, (cd.findtext("domain:reason", "", NS) or "").strip())
        return out

    def domain_create(
        self, name: str, *, years: int, registrant: str, contacts: dict[str, str], nameservers: list[str],
        auth_info: str,
    ) -> tuple[date | None, date | None]:  # fmt: skip
        """Create; answers (created, expires) from ``creData``."""

        def build(cmd):
            create = self._domain(cmd, "create")
            _el(create, DOMAIN, "name", name)
            _el(create, DOMAIN, "period", str(years), unit="y")
            if nameservers:
                ns = _el(create, DOMAIN, "ns")
                for host in nameservers:
                    _el(ns, DOMAIN, "hostObj", host)
            _el(create, DOMAIN, "registrant", registrant)
            for kind in ("admin", "tech", "billing"):
                if contacts.get(kind):
                    _el(create, DOMAIN, "contact", contacts[kind], type=kind)
            _el(_el(create, DOMAIN, "authInfo"), DOMAIN, "pw", auth_info)

        response = self.command(build)
        return _date(response.text("domain:creData/domain:crDate")), _date(
            response.text("domain:creData/domain:exDate")
        )

    def domain_renew(self, name: str, *, current_expiry: date, years: int) -> date | None:
        """Renew from ``current_expiry`` (the registry refuses a date that is not the current one,
        so a replayed renewal cannot extend twice); answers the new expiry."""

        def build(cmd):
            renew = self._domain(cmd, "renew")
            _el(renew, DOMAIN, "name", name)
            _el(renew, DOMAIN, "curExpDate", current_expiry.isoformat())
            _el(renew, DOMAIN, "period", str(years), unit="y")

        return _date(self.command(build).text("domain:renData/domain:exDate"))

    def domain_info(self, name: str, *, auth_info: str | None = None) -> DomainInfo:
        def build(cmd):
            info = self._domain(cmd, "info")
            _el(info, DOMAIN, "name", name, hosts="all")
            if auth_info:
                _el(_el(info, DOMAIN, "authInfo"), DOMAIN, "pw", auth_info)

        response = self.command(build)
        data = response.find("domain:infData")
        if data is None:
            raise EppProtocolError("domain:info answered without <domain:infData>")
        hosts = [h.text.strip().lower() for h in data.findall("domain:ns/domain:hostObj", NS) if h.text]
        hosts += [
            h.text.strip().lower() for h in data.findall("domain:ns/domain:hostAttr/domain:hostName", NS) if h.text
        ]
        return DomainInfo(
            name=(data.findtext("domain:name", "", NS) or "").strip().lower(),
            roid=data.findtext("domain:roid", None, NS),
            statuses=[s.get("s", "") for s in data.findall("domain:status", NS)],
            registrant=data.findtext("domain:registrant", None, NS),
            nameservers=hosts,
            created=_date(data.findtext("domain:crDate", None, NS)),
            expires=_date(data.findtext("domain:exDate", None, NS)),
            auth_info=data.findtext("domain:authInfo/domain:pw", None, NS),
        )

    def domain_update(
        self, name: str, *, add_ns: list[str] = (), rem_ns: list[str] = (), add_status: list[str] = (),
        rem_status: list[str] = (),
    ) -> Response:  # fmt: skip
        def build(cmd):
            update = self._domain(cmd, "update")
            _el(update, DOMAIN, "name", name)
            for verb, hosts, statuses in (("add", add_ns, add_status), ("rem", rem_ns, rem_status)):
                if not hosts and not statuses:
                    continue
                part = _el(update, DOMAIN, verb)
                if hosts:
                    ns = _el(part, DOMAIN, "ns")
                    for host in hosts:
                        _el(ns, DOMAIN, "hostObj", host)
                for status in statuses:
                    _el(part, DOMAIN, "status", s=status)

        return self.command(build)

    def domain_transfer_request(self, name: str, *, auth_info: str, years: int | None = None) -> Response:
        def build(cmd):
            transfer = _el(cmd, EPP, "transfer", op="request")
            body = _el(transfer, DOMAIN, "transfer")
            _el(body, DOMAIN, "name", name)
            if years:
                _el(body, DOMAIN, "period", str(years), unit="y")
            _el(_el(body, DOMAIN, "authInfo"), DOMAIN, "pw", auth_info)

        return self.command(build)

    # host (RFC 5732): a nameserver inside a domain needs its glue addresses at the registry
    def host_create(self, name: str, *, addresses: list[str] = ()) -> Response:
        def build(cmd):
            create = _el(_el(cmd, EPP, "create"), HOST, "create")
            _el(create, HOST, "name", name)
            for addr in addresses:
                _el(create, HOST, "addr", addr, ip="v6" if ":" in addr else "v4")

        return self.command(build)

    # contact (RFC 5733)
    def contact_create(
        self, contact_id: str, *, name: str, email: str, city: str, country: str, org: str = "",
        street: list[str] = (), state: str = "", postal_code: str = "", voice: str = "", auth_info: str,
    ) -> str:  # fmt: skip
        """Create a contact; answers its id. A contact that exists already (2302) is the same
        contact made by an earlier run of the same job: its id is answered."""

        def build(cmd):
            create = _el(_el(cmd, EPP, "create"), CONTACT, "create")
            _el(create, CONTACT, "id", contact_id)
            postal = _el(create, CONTACT, "postalInfo", type="int")
            _el(postal, CONTACT, "name", name)
            if org:
                _el(postal, CONTACT, "org", org)
            addr = _el(postal, CONTACT, "addr")
            for line in [s for s in street if s][:3]:
                _el(addr, CONTACT, "street", line)
            _el(addr, CONTACT, "city", city)
            if state:
                _el(addr, CONTACT, "sp", state)
            if postal_code:
                _el(addr, CONTACT, "pc", postal_code)
            _el(addr, CONTACT, "cc", country)
            if voice:
                _el(create, CONTACT, "voice", voice)
            _el(create, CONTACT, "email", email)
            _el(_el(create, CONTACT, "authInfo"), CONTACT, "pw", auth_info)

        try:
            response = self.command(build)
        except EppError as exc:
            if exc.result == OBJECT_EXISTS:
                return contact_id
            raise
        return response.text("contact:creData/contact:id") or contact_id
