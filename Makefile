.PHONY: run test lint fmt bench load fuzz
# Set up and run the panel with the embedded default (SQLite, in-process jobs) on :8000.
run:
	bash scripts/run.sh

# Every test: installs and starts PostgreSQL and Redis when missing, then ruff and pytest.
test:
	bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

fmt:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

# Figures, not pass/fail, printed and merged into var/bench.json: API call -> CloudPod running next
# to a bare runc run; then, on a throwaway PostgreSQL and Redis, each figure as a ratio to a floor
# measured in the same run (bench/suite.py: list over HTTP, jobs, webhooks, billing run, and bench/metrics.py's ingest when present; BENCH_* sizes).
bench:
	bash scripts/venv.sh
	@command -v runc >/dev/null && dpkg -s busybox-static >/dev/null 2>&1 && command -v wrk >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc busybox-static wrk >/dev/null)
	.venv/bin/python bench/cloudpods.py
	mkdir -p var && MPANEL_BENCH=1 BENCH_OUT=$(CURDIR)/var/bench.json bash scripts/test.sh

# Mixed workload against gunicorn on loopback from wrk for LOAD_SECONDS (600): requests/s, p50/p95/p99,
# errors (must be 0, else it fails) and the RSS of gunicorn's workers at start and end (bench/load.py).
load:
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	mkdir -p var && MPANEL_LOAD=1 LOAD_OUT=$(CURDIR)/var/load.json bash scripts/test.sh

# schemathesis over every operation of /api/v1/schema/: FUZZ_EXAMPLES (default 25) per operation plus the
# coverage phase (`make test` runs a small fixed budget of the same checks: test_fuzz_quick).
fuzz:
	bash scripts/test.sh -m fuzz tests/platform/test_fuzz.py
