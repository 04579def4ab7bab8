"""Every viewset on the API router has a test class (NetBox's idea). Exemptions need a reason."""

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import tests
from mpanel.api import router

EXEMPT: dict[str, str] = {}


def _test_classes():
    root = Path(tests.__file__).parent
    # Test modules live in one package per module of the panel (tests/billing/, tests/hosting/, …).
    for info in pkgutil.walk_packages([str(root)], prefix="tests."):
        if info.name.rsplit(".", 1)[-1].startswith("test_"):
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ == module.__name__ and cls.__name__.startswith("Test"):
                    yield cls


def covered_viewsets() -> set[type]:
    covered = set()
    for cls in _test_classes():
        if getattr(cls, "viewset", None) is not None:
            covered.add(cls.viewset)
        covered.update(getattr(cls, "covers", []))
    return covered


# Importing the other test modules may build the API schema (tests/platform/test_fuzz.py), which reads the
# database: allowed here, so this test passes whether or not pytest collected those modules first.
@pytest.mark.django_db
def test_every_routed_viewset_has_a_test_class():
    covered = covered_viewsets()
    missing = [
        f"{prefix} ({viewset.__name__})"
        for prefix, viewset, _basename in router.registry
        if viewset not in covered and viewset.__name__ not in EXEMPT
    ]
    assert not missing, f"viewsets without a test class (subclass tests.api_mixin.ApiTestCase): {missing}"


def test_exemptions_have_reasons_and_exist():
    names = {viewset.__name__ for _p, viewset, _b in router.registry}
    for name, reason in EXEMPT.items():
        assert name in names, f"stale exemption {name}"
        assert len(reason) > 20, f"exemption {name} needs a written reason"


def test_no_viewset_action_is_named_like_an_http_method():
    """DRF calls a viewset's method named like the HTTP verb for that verb on *every* route of the
    viewset (a file-manager action named `delete` answered `DELETE /files/` with a 500), and the role
    map then falls back to the verb's name. Actions get other names (`delete_entry` at `…/delete/`)."""
    verbs = ("get", "post", "put", "patch", "delete", "head", "trace")
    clashes = [
        f"{viewset.__module__}.{viewset.__qualname__}.{verb}"
        for _prefix, viewset, _basename in router.registry
        for verb in verbs
        if getattr(viewset, verb, None) is not None
    ]
    assert router.registry and not clashes, clashes
