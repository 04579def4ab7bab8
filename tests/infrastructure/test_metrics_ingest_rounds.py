"""The metrics ingest's fifth-round shortcuts (issue 21) change nothing that a node or a reader sees:
the garbage collector is paused for a request and always restored; the node's report written by one
statement holds what the select-and-save path writes; a batch with stored samples, COPYed without a
savepoint when the ingest is the outermost transaction, stores and answers what it did before."""

from __future__ import annotations

import gc
import json

import pytest

from apps.metrics import services
from tests.infrastructure.test_metrics import post_batch, recent, secret_node


def test_the_collector_is_paused_and_always_restored():
    assert gc.isenabled()
    with services.collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), services.collector_paused():
        raise ZeroDivisionError
    assert gc.isenabled()
    gc.disable()  # paused by someone else: left as it was
    try:
        with services.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.django_db
def test_a_request_is_handled_with_the_collector_paused(tenant_a, monkeypatch):
    node = secret_node(tenant_a, hostname="paused")
    seen = []
    real = services.parse_batch
    monkeypatch.setattr(services, "parse_batch", lambda body: seen.append(gc.isenabled()) or real(body))
    response, _ = post_batch(node, {"samples": [["cpu.percent", recent(), 1.5]]})
    assert response.status_code == 200 and response.json()["stored"] == 1
    assert seen == [False] and gc.isenabled()
    bad, _ = post_batch(node, {"samples": [["cpu.percent", recent(), True]]})
    assert bad.status_code == 400 and gc.isenabled()
    unsigned = post_batch(node, {}, headers={"X-Mpanel-Node": str(node.pk)})[0]
    assert unsigned.status_code == 401 and gc.isenabled()
    assert json.loads(unsigned.content)["code"] == "not_authenticated"
