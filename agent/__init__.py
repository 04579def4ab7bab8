"""The node agent: the node-side work of mPanel (CloudPods on runc, heartbeats).

The same code runs in-process for a ``local`` node (``apps.nodes.drivers.LocalDriver``) and
behind an HTTP service for an ``agent`` node (``python -m agent serve``). It imports nothing
from Django, so a node needs only Python and runc.
"""
