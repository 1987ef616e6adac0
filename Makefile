# Carepath: the two set-up commands are `make demo` and `make test`; each builds .venv on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL ?= postgresql+psycopg2://postgres@127.0.0.1:5432/test

# Prefect: no telemetry (no internet here), quiet progress bars.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install demo test test-sqlite test-postgres lint audit bench serve clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Carepath needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

install: $(STAMP)

## Run the main job on the embedded defaults (SQLite file, local SMS channel, ephemeral Prefect API).
demo: $(STAMP)
	$(BIN)/carepath demo

## The whole suite on SQLite and on PostgreSQL (PG_URL; skipped with a notice when none answers, unless
## CAREPATH_TEST_REQUIRE_POSTGRES=1, as in CI). The two suites run side by side (each on its own databases, ports
## and temporary folders; most of their time is spent waiting on servers they start), and each one's output is
## printed whole when it ends. `make test-sqlite` / `make test-postgres` run one.
test: $(STAMP)
	@echo "running the SQLite and PostgreSQL suites side by side; each prints its report when it ends"
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgres

test-sqlite: $(STAMP)
	CAREPATH_TEST_DB=sqlite $(BIN)/python -m pytest -q

test-postgres: $(STAMP)
	@if $(BIN)/python -c "import sqlalchemy as s; s.create_engine('$(PG_URL)').connect().close()" 2>/dev/null; then \
		CAREPATH_TEST_DB=postgresql CAREPATH_TEST_POSTGRES_URL='$(PG_URL)' $(BIN)/python -m pytest -q; \
	elif [ "$${CAREPATH_TEST_REQUIRE_POSTGRES:-0}" = 1 ]; then \
		echo "PostgreSQL at $(PG_URL) is not reachable" >&2; exit 1; \
	else \
		echo "NOTICE: no PostgreSQL at $(PG_URL); the PostgreSQL run was skipped (set PG_URL)"; \
	fi

## The whole stack on loopback: Prefect server + UI (:4200), deployments, worker, receiver (:8000), drain loop.
serve: $(STAMP)
	$(BIN)/python -m deployments.serve

lint: $(STAMP)
	$(BIN)/ruff check .

## Known vulnerabilities in the pinned dependencies (pip-audit); says plainly when its service is unreachable.
audit: $(STAMP)
	$(BIN)/python .ci/audit.py

bench: $(STAMP)
	$(BIN)/python -m bench.iot_drain

clean:
	rm -rf $(VENV) carepath.db carepath.db-wal carepath.db-shm
