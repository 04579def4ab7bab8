"""Extension points: one registration style for the whole panel.

An app that owns an extension point declares a ``Registry``; other apps add to it with a decorator
when their modules load (their ``AppConfig.ready``), so the owner never imports them:

    HANDLERS: Registry[Callable] = Registry("job handler")

    @HANDLERS.register("website.provision")
    def provision(job): ...

    @PAID.register()            # an ordered list of hooks: the key defaults to the function's path
    def on_paid(invoice): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")


def _path(obj: object) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"


class Registry(Generic[T]):
    """Entries by key, in registration order. Registering the same object again is a no-op (modules
    may be imported twice); another object under a taken key is a mistake and raises."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, key: str | None = None, *, replace: bool = False) -> Callable[[T], T]:
        def add(obj: T) -> T:
            name = key if key is not None else _path(obj)
            held = self._entries.get(name)
            if held is not None and held is not obj and not replace and _path(held) != _path(obj):
                raise ImproperlyConfigured(f"{self.what} {name!r} is registered twice ({_path(held)}, {_path(obj)}).")
            self._entries[name] = obj
            return obj

        return add

    def unregister(self, key: str) -> None:
        self._entries.pop(key, None)

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
