"""The one registration style for extension points."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.common.registry import Registry


def first(x):
    return x


def second(x):
    return x


def test_keyed_entries_keep_their_order_and_refuse_a_second_owner():
    reg: Registry = Registry("thing")
    reg.register("a")(first)
    reg.register("b")(second)
    assert reg.keys() == ["a", "b"] and reg["a"] is first and "b" in reg and len(reg) == 2
    reg.register("a")(first)  # the same object again (a module imported twice) is fine
    with pytest.raises(ImproperlyConfigured, match="thing 'a' is registered twice"):
        reg.register("a")(second)
    reg.register("a", replace=True)(second)
    assert reg["a"] is second
    with pytest.raises(KeyError, match="No thing 'zzz'"):
        reg["zzz"]
    assert reg.get("zzz") is None


def test_unkeyed_hooks_are_an_ordered_list_keyed_by_their_path():
    hooks: Registry = Registry("hook")
    hooks.register()(first)
    hooks.register()(second)
    hooks.register()(first)
    assert list(hooks) == [first, second]
    hooks.unregister(f"{first.__module__}.first")
    assert list(hooks) == [second]
