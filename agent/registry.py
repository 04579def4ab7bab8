"""The node's operations by name: ``OPERATIONS``, filled by the modules that implement them.

    @OPERATIONS.register("dns_zone_ensure")
    def zone_ensure(node: Node, args: dict) -> dict: ...

An operation takes the node it runs on (``agent.runtime.NodeRuntime``) and its arguments as plain
data (the wire format and the local driver's), and answers plain data or raises ``AgentError``.
``agent.dispatch`` imports every operation module once and calls them by name.

``Registry`` is the agent's copy of ``apps.common.registry.Registry`` (the agent imports nothing of
the panel): entries by key in registration order; the same object again is a no-op (a module may be
imported twice), another object under a taken key raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


def _path(obj: object) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"


class Registry(Generic[T]):
    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, key: str | None = None) -> Callable[[T], T]:
        def add(obj: T) -> T:
            name = key if key is not None else _path(obj)
            held = self._entries.get(name)
            if held is not None and held is not obj and _path(held) != _path(obj):
                raise ValueError(f"{self.what} {name!r} is registered twice ({_path(held)}, {_path(obj)}).")
            self._entries[name] = obj
            return obj

        return add

    def get(self, key: str, default: T | None = None) -> T | None:
        return self._entries.get(key, default)

    def __getitem__(self, key: str) -> T:
        try:
            return self._entries[key]
        except KeyError:
            raise KeyError(f"No {self.what} {key!r}.") from None

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())


class Node(Protocol):
    """The node an operation runs on, as the operations see it: ``agent.runtime.NodeRuntime``,
    described here so that no operation module imports the runtime (which imports them)."""

    @property
    def root(self) -> Path: ...

    @property
    def web(self) -> Any: ...  # agent.web.WebRuntime: the node's websites, under <root>/web


Operation = Callable[[Node, dict], Any]
OPERATIONS: Registry[Operation] = Registry("agent operation")
