# notiflow: set up, start, test.
#
#   make serve   create .venv if needed, install notiflow, run `notiflow serve`
#   make test    install with [dev], make sure PostgreSQL and Redis run, run pytest
#   make lint    ruff check, ruff format --check, mypy (strict)
#   make bench   run the benchmarks in bench/
#
# Everything runs through .venv/bin; nothing needs an activated environment.
# The installs are remembered by stamp files in .venv that depend on pyproject.toml,
# so a second `make serve` / `make test` starts at once.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

# Extra arguments: `make serve SERVE_ARGS="--port 8080"`, `make test PYTEST_ARGS="-k unread -x"`.
SERVE_ARGS ?=
PYTEST_ARGS ?=
# Test processes for the tests that may run side by side (scripts/run-tests.sh).
TEST_WORKERS ?= 2

# Only the folders that exist (an empty bench/ is not in a fresh clone).
LINT_PATHS := $(wildcard src tests bench)

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help
.PHONY: help serve install dev services test lint lint-check lint-format lint-types bench clean

help:
	@echo "make serve   set up (first time) and start notiflow (http://127.0.0.1:8000 unless SERVE_ARGS=\"--port N\")"
	@echo "make test    run the test suite on SQLite and PostgreSQL (starts PostgreSQL/Redis)"
	@echo "make lint    ruff check, ruff format --check, mypy --strict"
	@echo "make bench   run the benchmarks in bench/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	@echo "notiflow: installing into $(VENV) (first run only, about a minute)..."
	$(BIN)/python -m pip install --quiet --editable .
	@touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	@echo "notiflow: installing into $(VENV) with the development tools (first run only, a minute or two)..."
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	@touch $@ $(RUNTIME_STAMP)

install: $(RUNTIME_STAMP)

dev: $(DEV_STAMP)

serve: $(RUNTIME_STAMP)
	@echo "notiflow: starting notiflow serve $(SERVE_ARGS); its api_listening line says where (docs at /docs); Ctrl-C stops it"
	$(BIN)/notiflow serve $(SERVE_ARGS)

services:
	@scripts/ensure-services.sh

test: $(DEV_STAMP) services
	@PYTHON=$(BIN)/python TEST_WORKERS=$(TEST_WORKERS) scripts/run-tests.sh $(PYTEST_ARGS)

lint: lint-check lint-format lint-types

lint-check: $(DEV_STAMP)
	$(BIN)/ruff check $(LINT_PATHS)

lint-format: $(DEV_STAMP)
	$(BIN)/ruff format --check $(LINT_PATHS)

lint-types: $(DEV_STAMP)
	$(BIN)/mypy src

bench: $(DEV_STAMP) services
	@found=0; \
	for script in bench/*.py; do \
		[ -f "$$script" ] || continue; \
		case "$$(basename "$$script")" in _*|conftest.py) continue ;; esac; \
		found=1; \
		echo "== $$script"; \
		$(BIN)/python "$$script" || exit $$?; \
	done; \
	if [ $$found -eq 0 ]; then echo "make bench: no benchmarks in bench/ yet"; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
