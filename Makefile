# The two commands a newcomer needs: `make run` and `make test` (`make help` lists all).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help run test bench install install-runtime system-deps lint typecheck unit integration e2e clean
.DEFAULT_GOAL := help

help:  ## List the targets and the variables they read
	@echo "Targets:"
	@awk -F ':.*## ' '/^[a-z0-9-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo "Variables:"
	@echo "  HOST, PORT       where make run serves the API (127.0.0.1, 5005)"
	@echo "  DATABASE_URL     the database (make run: SQLite in ./allocation.sqlite3;"
	@echo "                   make test: a throwaway PostgreSQL unless set)"
	@echo "  REDIS_URL        Redis (make run: unset, events are logged; with it the"
	@echo "                   consumer runs too; make test: a throwaway Redis unless set)"
	@echo "  BENCH_ARGS       options for make bench, e.g. BENCH_ARGS=--quick"
	@echo "  VENV, PYTHON     the virtualenv (.venv) and the Python that makes it (python3)"
	@echo "Every setting the service reads is in README.md, Configuration."

# `allocation run` supervises the API, the relay (it logs events when REDIS_URL is
# unset) and, with REDIS_URL, the consumer: if one exits, it stops the others and
# fails; Ctrl-C or SIGTERM (to make or to it) stops all of them. exec: make's
# child is the supervisor itself, so make's SIGTERM reaches it.
run: install-runtime  ## Migrate, then serve the API on http://$HOST:$PORT with the relay (and the consumer with REDIS_URL)
	$(BIN)/allocation migrate
	exec $(BIN)/allocation run --host $${HOST:-127.0.0.1} --port $${PORT:-5005}

test: install system-deps lint typecheck  ## Lint, types, then unit, integration and end-to-end tests
	$(BIN)/pytest

bench: install system-deps  ## Benchmark the shipped stack on throwaway servers (bench/README.md); BENCH_ARGS=--quick
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk with apt-get"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk >/dev/null; }
	@$(BIN)/python -c "import gunicorn, pyuwsgi" 2>/dev/null && [ -x $(BIN)/py-spy ] || { \
		echo "installing bench/requirements.txt into $(VENV)"; \
		$(BIN)/pip install --quiet -r bench/requirements.txt; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# make run needs only what the service runs on; make test adds the tests' toolchain.
install-runtime: $(VENV)/.runtime  ## Create .venv with the service and its runtime dependencies

$(VENV)/.runtime: setup.py requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt -e .
	touch $@

install: $(VENV)/.installed  ## install-runtime, and the tests' toolchain (requirements-dev.txt)

$(VENV)/.installed: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# The tests start their own PostgreSQL and Redis servers from these binaries; the
# failover test also a pg_auto_failover formation (pg_autoctl and its extension) and
# Sentinels (redis-server in sentinel mode: no package of their own needed).
PGAF_EXTENSION := /usr/share/postgresql/15/extension/pgautofailover.control
system-deps:  ## Install redis-server, PostgreSQL and pg_auto_failover with apt-get when missing (for the tests)
	@if ! command -v redis-server >/dev/null 2>&1 || { ! command -v initdb >/dev/null 2>&1 && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; } \
		|| ! command -v pg_autoctl >/dev/null 2>&1 || [ ! -f $(PGAF_EXTENSION) ]; then \
		echo "installing redis-server, postgresql and pg_auto_failover with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server postgresql \
			postgresql-15-auto-failover pg-auto-failover-cli >/dev/null; \
	fi

# ruff for style and bugs; import-linter keeps the layers pointing down.
lint: install  ## ruff (style, bugs, format) and import-linter (layers point down)
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/lint-imports

typecheck: install  ## mypy, strict
	$(BIN)/mypy

unit: install  ## The unit tests only (fakes, no servers)
	$(BIN)/pytest tests/unit

integration: install system-deps  ## The adapters against real SQLite, PostgreSQL and SMTP
	$(BIN)/pytest tests/integration

e2e: install system-deps  ## The real processes on PostgreSQL and Redis
	$(BIN)/pytest tests/e2e

clean:  ## Remove .venv, caches and the make run database
	rm -rf $(VENV) *.egg-info src/*.egg-info .pytest_cache .mypy_cache allocation.sqlite3*
