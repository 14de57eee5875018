# The two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test bench install system-deps lint typecheck unit integration e2e clean

# `allocation run` supervises the API, the relay (it logs events when REDIS_URL is
# unset) and, with REDIS_URL, the consumer: if one exits, it stops the others and
# fails; Ctrl-C or SIGTERM (to make or to it) stops all of them. exec: make's
# child is the supervisor itself, so make's SIGTERM reaches it.
run: install  ## Migrate, then serve the API on http://localhost:5005 (HOST, PORT) beside the relay (SQLite unless DATABASE_URL is set)
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

install: $(VENV)/.installed

$(VENV)/.installed: setup.py requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e .
	touch $@

# The tests start their own PostgreSQL and Redis servers from these binaries.
system-deps:
	@if ! command -v redis-server >/dev/null 2>&1 || { ! command -v initdb >/dev/null 2>&1 && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; }; then \
		echo "installing redis-server and postgresql with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server postgresql >/dev/null; \
	fi

# ruff for style and bugs; import-linter keeps the layers pointing down.
lint: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

integration: install system-deps
	$(BIN)/pytest tests/integration

e2e: install system-deps
	$(BIN)/pytest tests/e2e

clean:
	rm -rf $(VENV) *.egg-info src/*.egg-info .pytest_cache .mypy_cache allocation.sqlite3*
