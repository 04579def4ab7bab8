"""Template helpers of the service pages: what a pod shows and what may be done to it now."""

from django import template

from apps.cloudpods.selectors import pod_runtime

from .. import acts

register = template.Library()


@register.simple_tag
def pod_live(pod) -> dict:
    """``{"actions": [...], "runtime": {...}}``: the acts the portal allows now and the node's live
    state (``unknown`` when the node cannot be asked; cached a few seconds by the pods app)."""
    return {"actions": acts.pod_actions(pod), "runtime": pod_runtime(pod)}


@register.filter
def megabytes(value) -> str:
    return f"{int(value) // (1024 * 1024)} MB" if isinstance(value, int) else "—"
