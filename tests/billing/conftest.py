"""Fixtures of the billing tests: ``stripe_api``, a local replay of Stripe's API (tests/billing_support.py)."""

from tests.billing_support import stripe_api  # noqa: F401 (a fixture)
