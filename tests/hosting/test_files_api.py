"""The file manager: every operation through the API on a real node directory, roles and
guardian grants, and confinement to the site's root (fixed cases through the API, and a
hypothesis property test over path inputs with symlinks planted inside the root)."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from guardian.shortcuts import assign_perm
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from agent.files import PathRefused, SiteFiles
from agent.runtime import AgentError
from agent.web import WebRuntime
from apps.audit.models import AuditEvent
from apps.files.api import FileManagerViewSet
from apps.jobs import services as job_services
from apps.tenancy.roles import ORDERED, Role
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for
from tests.web_support import web_root, website_in  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


@pytest.fixture(autouse=True)
def _root(web_root):  # noqa: F811
    return web_root


def site_with_files(fx, seq):
    """A website whose files exist on the (local) node: a public/index.html and an outside neighbour."""
    site = website_in(fx, seq)
    from django.conf import settings

    home = WebRuntime(Path(settings.MPANEL_NODE_ROOT) / "web").site_dir(site.site_id)
    (home / "public").mkdir(parents=True)
    (home / "public" / "index.html").write_text("hi")
    return site


def home_of(site) -> Path:
    from django.conf import settings

    return Path(settings.MPANEL_NODE_ROOT) / "web" / "www" / site.site_id


def tree(path: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(path))] = (
                os.readlink(p) if p.is_symlink() else (p.read_bytes() if p.is_file() else "dir"),
                oct(os.lstat(p).st_mode),
            )
    return out


def furl(site, action=None) -> str:
    if action:
        return reverse(f"hosting-files-{action}", kwargs={"pk": site.pk})
    return reverse("hosting-files-detail", kwargs={"pk": site.pk})


class TestFileManagerApi(ApiTestCase):
    viewset = FileManagerViewSet
    basename = "hosting-files"
    roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER}

    def make(self, fx, seq):
        return site_with_files(fx, seq)


@pytest.mark.django_db
class TestOperations:
    def test_every_operation(self, tenant_a, settings):
        site = site_with_files(tenant_a, 1)
        home = home_of(site)
        c = client_for(tenant_a.owner, tenant_a.tenant)

        listing = c.get(furl(site), {"path": "public"}).json()
        assert [e["name"] for e in listing["entries"]] == ["index.html"] and listing["path"] == "public"
        assert c.post(furl(site, "mkdir"), {"path": "public/css/deep"}, format="json").status_code == 201
        r = c.post(furl(site, "write"), {"path": "public/css/site.css", "content": "body{}\n"}, format="json")
        assert r.status_code == 200 and r.json()["size"] == 7
        assert c.get(furl(site, "read"), {"path": "public/css/site.css"}).json()["content"] == "body{}\n"
        assert c.get(furl(site, "stat"), {"path": "public/css"}).json()["type"] == "dir"

        big = os.urandom(1_300_000)  # more than one chunk: staged, then renamed into place
        upload = SimpleUploadedFile("photo.bin", big, content_type="application/octet-stream")
        r = c.post(furl(site, "upload"), {"path": "public", "file": upload}, format="multipart")
        assert r.status_code == 201, r.content
        assert (home / "public" / "photo.bin").read_bytes() == big
        assert not [p for p in (home / "public").iterdir() if p.name.startswith(".mp-")]
        small = SimpleUploadedFile("note.txt", b"note", content_type="text/plain")
        assert c.post(furl(site, "upload"), {"path": "", "file": small}, format="multipart").status_code == 201
        assert (home / "note.txt").read_bytes() == b"note"

        r = c.get(furl(site, "download"), {"path": "public/photo.bin"})
        assert r.status_code == 200 and r.streaming and int(r["Content-Length"]) == len(big)
        assert b"".join(r.streaming_content) == big

        assert (
            c.post(furl(site, "rename"), {"source": "note.txt", "target": "public/n.txt"}, format="json").status_code
            == 200
        )
        assert (home / "public" / "n.txt").exists() and not (home / "note.txt").exists()
        r = c.post(furl(site, "copy"), {"source": "public/css", "target": "public/css2"}, format="json")
        assert r.status_code == 201 and (home / "public" / "css2" / "site.css").read_text() == "body{}\n"
        r = c.post(furl(site, "chmod"), {"path": "public/n.txt", "mode": "0600"}, format="json")
        assert r.json()["mode"] == "0600" and oct((home / "public" / "n.txt").stat().st_mode)[-3:] == "600"

        for fmt, name in (("zip", "backup.zip"), ("tar.gz", "backup.tar.gz")):
            r = c.post(furl(site, "compress"), {"paths": ["public/css", "public/n.txt"], "target": name,
                                               "format": fmt}, format="json")  # fmt: skip
            assert r.status_code == 201, r.content
            assert c.post(furl(site, "mkdir"), {"path": f"out-{fmt}"}, format="json").status_code == 201
            r = c.post(furl(site, "extract"), {"archive": name, "target": f"out-{fmt}"}, format="json")
            assert r.status_code == 200 and r.json()["extracted"] >= 2, r.content
            assert (home / f"out-{fmt}" / "public" / "css" / "site.css").read_text() == "body{}\n"

        assert c.post(furl(site, "delete"), {"path": "public/css2"}, format="json").status_code == 200
        assert not (home / "public" / "css2").exists()
        actions = set(AuditEvent.objects.filter(object_id=str(site.pk)).values_list("action", flat=True))
        assert {
            "website.files.write",
            "website.files.upload",
            "website.files.delete",
            "website.files.extract",
        } <= actions

    def test_upload_size_limit_and_missing_files(self, tenant_a, settings):
        settings.FILES_MAX_UPLOAD_BYTES = 10
        site = site_with_files(tenant_a, 2)
        c = client_for(tenant_a.owner, tenant_a.tenant)
        upload = SimpleUploadedFile("big.bin", b"x" * 11)
        assert c.post(furl(site, "upload"), {"path": "", "file": upload}, format="multipart").status_code == 400
        assert not (home_of(site) / "big.bin").exists()
        assert c.get(furl(site, "read"), {"path": "nope.txt"}).status_code == 400
        assert c.post(furl(site, "delete"), {"path": ""}, format="json").status_code == 400  # not the root

    def test_roles_and_grants(self, tenant_a, tenant_b):
        site = site_with_files(tenant_a, 3)
        other_site = site_with_files(tenant_a, 4)
        body = {"path": "public/x.txt", "content": "x"}
        for role in ORDERED:
            c = client_for(tenant_a.users[role], tenant_a.tenant)
            read = c.get(furl(site, "read"), {"path": "public/index.html"})
            assert read.status_code == (200 if role.includes(Role.MEMBER) else 403), role
            write = c.post(furl(site, "write"), body, format="json")
            assert write.status_code == (200 if role.includes(Role.ADMIN) else 403), role
            stranger = client_for(tenant_b.users[role], tenant_b.tenant)
            assert stranger.get(furl(site, "read"), {"path": "public/index.html"}).status_code == 404
            assert stranger.post(furl(site, "write"), body, format="json").status_code == 404
        member = tenant_a.users[Role.MEMBER]
        assign_perm("websites.manage_website_files", member, site)
        c = client_for(member, tenant_a.tenant)
        assert c.post(furl(site, "write"), {"path": "granted.txt", "content": "ok"}, format="json").status_code == 200
        assert c.post(furl(other_site, "write"), {"path": "granted.txt", "content": "no"},
                      format="json").status_code == 403  # fmt: skip
        assert (home_of(site) / "granted.txt").read_text() == "ok" and not (
            home_of(other_site) / "granted.txt"
        ).exists()

    def test_deleted_site_files_are_unreachable(self, tenant_a):
        from apps.websites.services import website_delete

        site = site_with_files(tenant_a, 5)
        with tenant_a.scope():
            website_delete(website=site)
        c = client_for(tenant_a.owner, tenant_a.tenant)
        assert c.get(furl(site), {"path": ""}).status_code == 404


BAD_PATHS = [
    "../escape.txt",
    "public/../../escape.txt",
    "/etc/passwd",
    "\\etc\\passwd",
    "C:/x",
    "a\x00b",
    "x" * 256,
    "a/" * 600,
    "out/secret.txt",
    "out/new.txt",
    "public/../out/new.txt",
    "inlink/../../escape.txt",
]


@pytest.mark.django_db
class TestConfinement:
    def plant(self, tmp_path, site) -> tuple[Path, Path]:
        home = home_of(site)
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret.txt").write_text("secret")
        (home / "out").symlink_to(outside)
        (home / "inlink").symlink_to(home / "public")
        (home / "public" / "outfile").symlink_to(outside / "secret.txt")
        return home, outside

    def test_bad_paths_are_400_and_touch_nothing(self, tenant_a, tmp_path):
        site = site_with_files(tenant_a, 10)
        home, outside = self.plant(tmp_path, site)
        before, outside_before = tree(home), tree(outside)
        c = client_for(tenant_a.owner, tenant_a.tenant)
        for path in [*BAD_PATHS, "public/outfile"]:
            calls = [
                c.get(furl(site), {"path": path}),
                c.get(furl(site, "stat"), {"path": path}),
                c.get(furl(site, "read"), {"path": path}),
                c.get(furl(site, "download"), {"path": path}),
                c.post(furl(site, "write"), {"path": path, "content": "pwned"}, format="json"),
                c.post(furl(site, "mkdir"), {"path": path}, format="json"),
                c.post(furl(site, "delete"), {"path": path}, format="json"),
                c.post(furl(site, "chmod"), {"path": path, "mode": "0777"}, format="json"),
                c.post(furl(site, "rename"), {"source": "public/index.html", "target": path}, format="json"),
                c.post(furl(site, "rename"), {"source": path, "target": "public/moved"}, format="json"),
                c.post(furl(site, "copy"), {"source": path, "target": "public/copied"}, format="json"),
                c.post(furl(site, "copy"), {"source": "public/index.html", "target": path}, format="json"),
                c.post(furl(site, "compress"), {"paths": [path], "target": "a.zip"}, format="json"),
                c.post(furl(site, "compress"), {"paths": ["public"], "target": path}, format="json"),
                c.post(furl(site, "extract"), {"archive": path}, format="json"),
                c.post(furl(site, "upload"), {"path": path, "file": SimpleUploadedFile("f", b"x")}, format="multipart"),
            ]
            for i, response in enumerate(calls):
                assert response.status_code == 400, (path, i, response.status_code, response.content[:200])
            assert tree(home) == before, path
            assert tree(outside) == outside_before, path
        assert (tmp_path / "escape.txt").exists() is False

    @pytest.mark.parametrize(
        "member",
        ["../evil.txt", "/abs-evil.txt", "ok/../../evil.txt", "out/evil.txt"],
    )
    @pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
    def test_zip_slip_archives_are_refused_whole(self, tenant_a, tmp_path, member, fmt):
        site = site_with_files(tenant_a, f"z{abs(hash((member, fmt))) % 10**6}")
        home, outside = self.plant(tmp_path, site)
        name = "evil.zip" if fmt == "zip" else "evil.tar.gz"
        if fmt == "zip":
            with zipfile.ZipFile(home / name, "w") as zf:
                zf.writestr("good.txt", "good")  # would be written first: it must not be
                zf.writestr(zipfile.ZipInfo(member), "evil")
        else:
            with tarfile.open(home / name, "w:gz") as tf:
                for entry, data in (("good.txt", b"good"), (member, b"evil")):
                    info = tarfile.TarInfo(entry)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        before, outside_before = tree(home), tree(outside)
        c = client_for(tenant_a.owner, tenant_a.tenant)
        response = c.post(furl(site, "extract"), {"archive": name}, format="json")
        assert response.status_code == 400, response.content
        assert tree(home) == before and tree(outside) == outside_before
        assert not (tmp_path / "evil.txt").exists() and not Path("/abs-evil.txt").exists()

    def test_archives_with_links_or_too_much_data_are_refused(self, tenant_a, tmp_path, settings):
        site = site_with_files(tenant_a, 20)
        home = home_of(site)
        with tarfile.open(home / "link.tar.gz", "w:gz") as tf:
            info = tarfile.TarInfo("passwd")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tf.addfile(info)
        with zipfile.ZipFile(home / "link.zip", "w") as zf:
            info = zipfile.ZipInfo("passwd")
            info.external_attr = (0o120777) << 16
            zf.writestr(info, "/etc/passwd")
        with zipfile.ZipFile(home / "big.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("zeros", b"\0" * 200_000)
        settings.FILES_MAX_UNPACKED_BYTES = 100_000
        before = tree(home)
        c = client_for(tenant_a.owner, tenant_a.tenant)
        for archive in ("link.tar.gz", "link.zip", "big.zip"):
            assert c.post(furl(site, "extract"), {"archive": archive}, format="json").status_code == 400, archive
        assert tree(home) == before


# --- the property test, on the node-side code directly (fast, thousands of inputs) -------------

SEGMENTS = st.sampled_from(["", ".", "..", "public", "index.html", "out", "inlink", "outfile", "loop", "new",
                            "x" * 256, "a\x00b", "\\", "C:", "~", "%2e%2e", "..."])  # fmt: skip
PATHS = st.one_of(
    st.lists(SEGMENTS, max_size=6).map("/".join),
    st.lists(SEGMENTS, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.text(max_size=40),
)


def plant(base: Path) -> tuple[Path, Path]:
    """A fresh site root with symlinks planted inside it: out of the root, inside it, and a loop."""
    root, outside = base / "site", base / "outside"
    (root / "public").mkdir(parents=True)
    outside.mkdir()
    (root / "public" / "index.html").write_text("hi")
    (outside / "secret.txt").write_text("secret")
    (root / "out").symlink_to(outside)
    (root / "inlink").symlink_to(root / "public")
    (root / "public" / "outfile").symlink_to(outside / "secret.txt")
    (root / "loop").symlink_to(root / "loop")
    return root, outside


def within(root: Path, path: Path) -> bool:
    real = os.path.realpath(path)
    return real == str(root) or real.startswith(str(root) + os.sep)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS, other=PATHS)
def test_property_no_path_escapes_the_root(tmp_path, path, other):
    with tempfile.TemporaryDirectory(dir=tmp_path) as base:
        check_confined(*plant(Path(base)), path, other)


def check_confined(root: Path, outside: Path, path: str, other: str) -> None:
    files = SiteFiles(root)
    outside_before = tree(outside)
    for follow in (True, False):
        try:
            resolved = files.resolve(path, follow_last=follow)
        except PathRefused:
            continue
        checked = resolved if follow or resolved == files.root else resolved.parent
        assert within(files.root, checked), (path, resolved)
        if not follow and resolved.is_symlink():
            assert within(files.root, resolved), (path, resolved)
    # Operations: each either refuses or acts inside the root; the outside never changes.
    operations = [
        lambda: files.stat(path),
        lambda: files.read(path),
        lambda: files.list(path),
        lambda: files.write(f"{path}/probe" if path else "probe", "cHJvYmU="),
        lambda: files.mkdir(f"{path}/d"),
        lambda: files.copy(path, other),
        lambda: files.chmod(path, "0644"),
        lambda: files.compress([path], f"{other}.zip", "zip"),
    ]
    for operation in operations:
        with contextlib.suppress(AgentError, OSError, ValueError):
            operation()
    assert tree(outside) == outside_before
    assert (outside / "secret.txt").read_text() == "secret"
