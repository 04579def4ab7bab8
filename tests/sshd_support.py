"""A real OpenSSH server for the SFTP backup backend: Debian's ``sshd`` run in the foreground
(``-D``, no systemd) on a free loopback port, with a host key and an ``authorized_keys`` made per test
in a folder of its own, public-key logins only, ``internal-sftp`` as the sftp subsystem. Skipped with
the reason when the binary is absent (`make test` installs openssh-server:
scripts/local-node-packages.sh)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.web_support import free_port


@dataclass
class Sshd:
    port: int
    user: str
    host_key: str  # the server's public host key, "ssh-ed25519 AAAA…" (what ssh-keyscan prints)
    folder: Path
    process: subprocess.Popen

    @property
    def authorized_keys(self) -> Path:
        return self.folder / "authorized_keys"

    def authorize(self, public_key: str) -> None:
        """Let a key log in (one authorized_keys line)."""
        with self.authorized_keys.open("a") as fh:
            fh.write(public_key.strip() + "\n")

    def log(self) -> str:
        return (self.folder / "sshd.log").read_text(errors="replace") if (self.folder / "sshd.log").exists() else ""


def sshd_binary() -> str:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if found is None:
        pytest.skip("OpenSSH's sshd is not installed: `make test` installs openssh-server")
    return os.path.abspath(found)  # sshd re-executes itself: an absolute path is required


@pytest.fixture
def sshd(tmp_path) -> Iterator[Sshd]:
    binary = sshd_binary()
    folder = tmp_path / "sshd"
    folder.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(folder / "host_key")],
                   check=True, capture_output=True)  # fmt: skip
    (folder / "authorized_keys").touch(mode=0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation, which sshd requires as root
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join([
            "ListenAddress 127.0.0.1",
            f"HostKey {folder / 'host_key'}",
            f"PidFile {folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",  # the test's folders are not root-owned 0755 all the way up
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            "",
        ])
    )  # fmt: skip
    log = (folder / "sshd.log").open("w")
    process = subprocess.Popen([binary, "-D", "-e", "-f", str(config), "-p", str(port)], stdout=log,
                               stderr=subprocess.STDOUT)  # fmt: skip
    host_key = " ".join((folder / "host_key.pub").read_text().split()[:2])
    server = Sshd(port=port, user=pwd.getpwuid(os.geteuid()).pw_name, host_key=host_key, folder=folder,
                  process=process)  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"sshd did not start: {server.log()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"sshd does not answer on 127.0.0.1:{port}: {server.log()[-2000:]}")
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
