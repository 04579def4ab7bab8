import pytest

from .support import catalog, make_customer


@pytest.fixture
def portal(tenant_a, tenant_b):
    """(A1, A2, B1): two customers of tenant A, one of tenant B, each with its portal users."""
    plan_a, plan_b = catalog(tenant_a.tenant), catalog(tenant_b.tenant)
    return (
        make_customer(tenant_a.tenant, "a1", plan_a),
        make_customer(tenant_a.tenant, "a2", plan_a),
        make_customer(tenant_b.tenant, "b1", plan_b),
    )


@pytest.fixture(autouse=True)
def _fresh_counters():
    """Lockout and throttle counters live in the shared cache (as in production): each test starts clean."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
