.PHONY: run test lint fmt
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
