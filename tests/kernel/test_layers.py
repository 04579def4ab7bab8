"""No module uses another module's private names.

A name that starts with one underscore (``_locked``, ``_plain``; dunders such as ``__version__`` are
public) belongs to the module that defines it. Importing it elsewhere (``from apps.x.services import
_y``) or reaching into another module for it (``services._y``) makes the two modules one without
saying so: the rule holds across apps, and between two modules of the same app too. A name another
module needs is made public (and documented) where it is defined.

The scan reads ``apps/``, ``agent/`` and ``mpanel/`` with ``ast`` (nothing is imported). Migrations are
generated code that must name a model's default callables wherever they live, so they are skipped.
The import layers themselves are checked by import-linter (``[tool.importlinter]`` in pyproject.toml).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("apps", "agent", "mpanel")

# Known offenders (none left after the kernel round, issue 15): "file: use" -> who removes it. The
# list only shrinks: the test fails when an entry is gone, so that it is taken off.
KNOWN: dict[str, str] = {
    # "apps/x/y.py: apps.x.services._name": "the helper who removes it",
}


def is_private(name: str) -> bool:
    return len(name) > 1 and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class Scanner:
    """Finds the uses of other modules' private names in one source file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def is_module(self, dotted: str) -> bool:
        path = self.root.joinpath(*dotted.split("."))
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()

    def module_name(self, path: Path) -> tuple[str, bool]:
        parts = list(path.relative_to(self.root).with_suffix("").parts)
        if parts[-1] == "__init__":
            return ".".join(parts[:-1]), True
        return ".".join(parts), False

    @staticmethod
    def absolute(current: str, is_package: bool, level: int, module: str | None) -> str:
        if level == 0:
            return module or ""
        base = current.split(".") if is_package else current.split(".")[:-1]
        base = base[: len(base) - (level - 1)]
        return ".".join([*base, module] if module else base)

    def offences(self, path: Path, source: str | None = None) -> list[str]:
        current, is_package = self.module_name(path)
        tree = ast.parse(source if source is not None else path.read_text(), str(path))
        found: list[tuple[int, str]] = []
        modules: dict[str, str] = {}  # a local name bound to one of our modules -> its dotted name
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source_module = self.absolute(current, is_package, node.level, node.module)
                if source_module.split(".")[0] not in PACKAGES:
                    continue
                for alias in node.names:
                    full = f"{source_module}.{alias.name}"
                    if self.is_module(full):
                        modules[alias.asname or alias.name] = full
                        # A private module is its package's own: only the package's modules import it.
                        if is_private(alias.name) and not f"{current}.".startswith(f"{source_module}."):
                            found.append((node.lineno, f"from {source_module} import {alias.name}"))
                    elif is_private(alias.name) and source_module != current:
                        found.append((node.lineno, f"from {source_module} import {alias.name}"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in PACKAGES:
                        top = alias.name.split(".")[0]
                        modules[alias.asname or top] = alias.name if alias.asname else top
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and is_private(node.attr)):
                continue
            chain: list[str] = []
            base = node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                dotted = ".".join([modules[base.id], *reversed(chain)])
                if dotted != current and self.is_module(dotted):
                    found.append((node.lineno, f"{dotted}.{node.attr}"))
        relative = path.relative_to(self.root).as_posix()
        return [f"{relative}: {what}" for _line, what in sorted(set(found))]


def scan_all() -> list[str]:
    scanner = Scanner(ROOT)
    offences: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                offences += scanner.offences(path)
    return offences


def test_no_module_uses_another_modules_private_names():
    offences = scan_all()
    new = [o for o in offences if o not in KNOWN]
    assert not new, "Private names used outside their module (make them public where defined):\n" + "\n".join(new)
    gone = [o for o in KNOWN if o not in offences]
    assert not gone, "Fixed: take these off KNOWN in tests/kernel/test_layers.py:\n" + "\n".join(gone)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from apps.audit.services import _plain", ["from apps.audit.services import _plain"]),
        ("from .services import _locked", ["from apps.shop.services import _locked"]),
        ("from . import services\nservices._locked(1)", ["apps.shop.services._locked"]),
        ("import apps.shop.services as s\ns._x", ["apps.shop.services._x"]),
        ("import apps.shop.services\napps.shop.services._x", ["apps.shop.services._x"]),
        ("from apps.shop import services\nservices.inner._x", []),  # an object's attribute, not a module's
        ("from apps.shop import _impl", ["from apps.shop import _impl"]),  # another package's private module
        ("from apps.shop.services import __all__, public", []),
        ("from django.utils.translation import gettext as _\nfrom os import _exit", []),  # not ours
        ("def f(obj):\n    return obj._meta, self._cache", []),
        ("_local = 1\nprint(_local)", []),
    ],
)
def test_the_scan_finds_private_names_taken_from_other_modules(tmp_path, source, expected):
    for name in ("apps/__init__.py", "apps/shop/__init__.py", "apps/shop/services.py", "apps/shop/_impl.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "apps/other").mkdir()
    (tmp_path / "apps/other/__init__.py").write_text("")
    module = tmp_path / ("apps/other/api.py" if "_impl" in source else "apps/shop/api.py")
    module.write_text(source)
    assert [o.split(": ", 1)[1] for o in Scanner(tmp_path).offences(module)] == expected


def test_a_package_may_import_its_own_private_module(tmp_path):
    for name in ("apps/__init__.py", "apps/shop/__init__.py", "apps/shop/_impl.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "apps/shop/api.py").write_text("from . import _impl\nfrom ._impl import thing\n")
    assert Scanner(tmp_path).offences(tmp_path / "apps/shop/api.py") == []
