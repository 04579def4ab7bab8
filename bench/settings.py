"""Settings of the benchmark and load servers: the production settings with the floors' URLs added.

The API under test is the real one (same middleware, authentication, throttles); only the URLconf
grows by the floor views of bench/urls.py.
"""

import os

from mpanel.settings import *  # noqa: F403
from mpanel.settings import REST_FRAMEWORK

ROOT_URLCONF = "bench.urls"
# Webhook deliveries of the load test come from one address faster than the public rate allows.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"login": "1000000/min", "public": "1000000/min"}}

# make load signs its webhook deliveries before the soak starts: their timestamps must stay valid for it.
MPANEL_WEBHOOK_TOLERANCE = int(os.environ.get("BENCH_WEBHOOK_TOLERANCE", "300"))
MPANEL_GENERIC_WEBHOOK_SECRET = os.environ.get("MPANEL_GENERIC_WEBHOOK_SECRET") or "bench-secret"
