"""Run one node operation by name, from plain data: the agent's wire format (``agent.server``) and
the panel's in-process local driver (``apps.nodes.drivers.LocalDriver``) both come through ``call``.

Each operation registers itself in ``agent.registry.OPERATIONS`` in the module that implements it;
importing the modules below, once, is what registers them all before the first call.
"""

from __future__ import annotations

from types import ModuleType

from . import backups, bandwidth, certs, databases, dns, files, mail, web
from . import runtime as node_runtime
from .errors import AgentError
from .registry import OPERATIONS
from .runtime import NodeRuntime

# Every module that registers operations: importing them here, once, is what registers them all.
OPERATION_MODULES: tuple[ModuleType, ...] = (node_runtime, web, files, dns, mail, databases, certs, backups,
                                                  bandwidth)  # fmt: skip


def call(runtime: NodeRuntime, op: str, args: dict) -> dict | list:
    """Run ``op`` on this node with ``args``; an unknown name is a permanent ``AgentError``."""
    operation = OPERATIONS.get(op)
    if operation is None:
        raise AgentError(f"unknown operation {op!r}", permanent=True)
    return operation(runtime, args)
