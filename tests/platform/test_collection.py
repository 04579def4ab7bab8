"""The suite's own shape: what a parallel run (pytest-xdist) relies on to run every item once."""

from collections import Counter

import pytest


def test_every_item_has_its_own_node_id(request: pytest.FixtureRequest) -> None:
    # xdist schedules and counts by node id: two items with one id run once and count twice.
    ids = Counter(item.nodeid for item in request.session.items)
    assert len(ids) == len(request.session.items), [nodeid for nodeid, n in ids.items() if n > 1][:5]
