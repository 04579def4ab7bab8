"""mail.node.sync: render the node's whole mail configuration as it is now (idempotent)."""

from __future__ import annotations

from apps.jobs.registry import PermanentError, handler
from apps.nodes.drivers import NodeError, driver_for
from apps.nodes.models import Node

from . import services
from .models import MailDomain, MailDomainStatus


@handler("mail.node.sync")
def node_sync(job) -> dict:
    node = Node.objects.filter(pk=job.payload.get("node")).first()
    if node is None:
        raise PermanentError("No such node in this tenant.")
    try:
        result = driver_for(node).mail_sync(services.node_spec(node.pk))
    except NodeError as exc:
        if exc.permanent or job.attempts >= job.max_attempts:
            MailDomain.objects.filter(node=node).update(status=MailDomainStatus.ERROR, last_error=exc.message[:2000])
            raise PermanentError(exc.message) from exc
        raise
    # What the node refused fails its own mail domain only; the node served everything else.
    faults: dict[str, list[str]] = {}
    for r in result.get("rejected") or []:
        faults.setdefault(str(r.get("domain")), []).append(
            f"{r.get('kind')} {r.get('key')!r} refused: {r.get('error')}"
        )
    MailDomain.objects.filter(node=node).exclude(name__in=faults).update(status=MailDomainStatus.ACTIVE, last_error="")
    for name, errors in faults.items():
        MailDomain.objects.filter(node=node, name=name).update(status=MailDomainStatus.ERROR,
                                                               last_error="; ".join(errors)[:2000])  # fmt: skip
    return result
