"""The node's own value rules (``agent/validate``) as the API applies them: a refusal is the same
400 field error as any other bad input. The API calls the very functions the node agent calls
again before it writes a daemon's file, so what the API accepts the node serves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from agent.validate import Invalid

from .exceptions import InvalidInput

T = TypeVar("T")


@contextmanager
def as_input(field: str | None = None) -> Iterator[None]:
    """Turn a rule's ``Invalid`` into ``InvalidInput`` on ``field`` (default: the rule's own)."""
    try:
        yield
    except Invalid as exc:
        raise InvalidInput(exc.message, field=field or exc.field) from None


def check(rule: Callable[..., T], value, *, field: str, **kwargs) -> T:
    """``rule(value)``, its refusal a 400 on ``field``."""
    with as_input(field):
        return rule(value, field=field, **kwargs)
