"""Checks of a repository's backend settings (``local``, ``sftp``, ``s3``): each bad value is an
``InvalidInput`` naming its field (a 400), before anything is written or sent to a node.

The values end up on a restic or ssh command line on a node (host, port, user, path) or in restic's
repository string (endpoint, bucket): they are held to narrow shapes, so no value can carry an
option, a space or a quote there.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from apps.common.exceptions import InvalidInput

LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
PATH_PART_RE = re.compile(r"^[A-Za-z0-9._-]+$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
ACCESS_KEY_RE = re.compile(r"^[A-Za-z0-9_.+/=-]{3,128}$")
HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


def host(value: object, *, field: str) -> str:
    """A DNS name (RFC 1123 labels) or an IPv4/IPv6 address, lower-cased."""
    text = str(value or "").strip().lower().rstrip(".")
    if not text:
        raise InvalidInput("A host name or IP address is required.", field=field)
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    labels = text.split(".")
    if len(text) > 253 or not all(LABEL_RE.match(label) for label in labels) or labels[-1].isdigit():
        raise InvalidInput(f"{value!r} is not a host name or an IP address.", field=field)
    return text


def port(value: object, *, field: str) -> int:
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput("A port is a number from 1 to 65535.", field=field) from None
    if isinstance(value, bool) or not 0 < number < 65536:
        raise InvalidInput("A port is a number from 1 to 65535.", field=field)
    return number


def ssh_user(value: object, *, field: str = "sftp_user") -> str:
    text = str(value or "").strip()
    if not USER_RE.match(text):
        raise InvalidInput("A user name: lower-case letters, digits, '_', '.', '-', at most 32.", field=field)
    return text


def remote_path(value: object, *, field: str = "sftp_path") -> str:
    """A folder on the SSH server (absolute, or relative to the user's home): plain names only."""
    text = str(value or "").strip()
    parts = [p for p in text.split("/") if p]
    if not parts or len(text) > 512 or any(p in (".", "..") or not PATH_PART_RE.match(p) for p in parts):
        raise InvalidInput("A folder such as /srv/backups or backups: letters, digits, '.', '_', '-' and '/', "
                           "no '..'.", field=field)  # fmt: skip
    return ("/" if text.startswith("/") else "") + "/".join(parts)


def host_key(value: object, *, field: str = "sftp_host_key") -> str:
    """The SSH server's public host key, as ``ssh-keyscan`` prints it (``<type> <base64>``, an
    optional host in front is dropped): the node checks the server against it, strictly."""
    words = str(value or "").split()
    if words and words[0] not in HOST_KEY_TYPES:
        words = words[1:]  # "host ssh-ed25519 AAAA…", a known_hosts line
    if len(words) < 2 or words[0] not in HOST_KEY_TYPES:
        raise InvalidInput("The server's public host key is required, e.g. the line `ssh-keyscan -t ed25519 "
                           "<host>` prints.", field=field)  # fmt: skip
    line = f"{words[0]} {words[1]}"
    try:
        serialization.load_ssh_public_key(line.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidInput("This is not a valid SSH public host key.", field=field) from None
    return line


def private_key(value: object, *, field: str = "sftp_private_key") -> tuple[str, str]:
    """An OpenSSH private key without a passphrase: (the key, its public line)."""
    text = str(value or "").strip() + "\n"
    try:
        key = serialization.load_ssh_private_key(text.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidInput("An OpenSSH private key without a passphrase is required (BEGIN OPENSSH PRIVATE KEY).",
                           field=field) from None  # fmt: skip
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return text, public.decode()


def new_key_pair(comment: str) -> tuple[str, str]:
    """An Ed25519 key made by the panel: (the OpenSSH private key, the authorized_keys line)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()  # fmt: skip
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}"


def endpoint(value: object, *, field: str = "s3_endpoint") -> str:
    """``https://host[:port]`` (or ``http://``, e.g. a MinIO on the private network): no path, no
    user, no query; ``s3.amazonaws.com`` style or any S3-compatible service."""
    text = str(value or "").strip().rstrip("/")
    try:
        url = urlsplit(text)
        url_port = url.port
    except ValueError:
        raise InvalidInput("The endpoint is a URL such as https://s3.example.com or http://10.0.0.5:9000.",
                           field=field) from None  # fmt: skip
    if url.scheme not in ("http", "https") or not url.hostname or url.path or url.query or url.fragment \
            or url.username or url.password:  # fmt: skip
        raise InvalidInput("The endpoint is a URL such as https://s3.example.com or http://10.0.0.5:9000 "
                           "(no path: the bucket is its own field).", field=field)  # fmt: skip
    name = host(url.hostname, field=field)
    shown = f"[{name}]" if ":" in name else name
    return f"{url.scheme}://{shown}" + (f":{port(url_port, field=field)}" if url_port is not None else "")


def bucket(value: object, *, field: str = "s3_bucket") -> str:
    """S3's bucket naming rules: 3-63 characters, lower-case letters, digits, '.' and '-', starting
    and ending with a letter or digit, no '..', not shaped like an IP address, none of the reserved
    prefixes and suffixes."""
    text = str(value or "").strip()
    problems = []
    if not BUCKET_RE.match(text):
        problems.append("3 to 63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit")
    if ".." in text or ".-" in text or "-." in text:
        problems.append("no '..', '.-' or '-.'")
    if re.match(r"^\d+\.\d+\.\d+\.\d+$", text):
        problems.append("not shaped like an IP address")
    if text.startswith(("xn--", "sthree-")) or text.endswith(("-s3alias", "--ol-s3")):
        problems.append("not starting with xn-- or sthree-, not ending with -s3alias or --ol-s3")
    if problems:
        raise InvalidInput("A bucket name: " + "; ".join(problems) + ".", field=field)
    return text


def region(value: object, *, field: str = "s3_region") -> str:
    text = str(value or "").strip() or "us-east-1"
    if not REGION_RE.match(text):
        raise InvalidInput("A region such as us-east-1 or eu-central-1.", field=field)
    return text


def access_key_id(value: object, *, field: str = "s3_access_key_id") -> str:
    text = str(value or "").strip()
    if not ACCESS_KEY_RE.match(text):
        raise InvalidInput("An access key id is required (3 to 128 letters, digits or + / = . _ -).", field=field)
    return text


def secret_key(value: object, *, field: str = "s3_secret_key") -> str:
    text = str(value or "")
    if not 8 <= len(text) <= 256 or any(c.isspace() or not c.isprintable() for c in text):
        raise InvalidInput("A secret key is required (8 to 256 printable characters, no spaces).", field=field)
    return text
