.PHONY: run test lint fmt bench fuzz
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

# Figures, not pass/fail, printed and merged into var/bench.json:
# API call -> CloudPod running (median/p95 of 20) next to a bare runc run; then, on a throwaway
# PostgreSQL, the billing run over BENCH_SUBSCRIPTIONS (100000) subscriptions and webhook throughput.
bench:
	bash scripts/venv.sh
	@command -v runc >/dev/null && dpkg -s busybox-static >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc busybox-static >/dev/null)
	.venv/bin/python bench/cloudpods.py
	mkdir -p var && MPANEL_BENCH=1 BENCH_OUT=$(CURDIR)/var/bench.json bash scripts/test.sh

# schemathesis over every operation of /api/v1/schema/: FUZZ_EXAMPLES (default 25) per operation plus the
# coverage phase (`make test` runs a small fixed budget of the same checks: test_fuzz_quick).
fuzz:
	bash scripts/test.sh -m fuzz tests/test_fuzz.py
