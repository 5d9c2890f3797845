# Quick start: `make run` serves the demo (SQLite + software keys); `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ETRUST_HOME ?= ./var
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install system-deps lint typecheck contracts pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/etrust --home $(ETRUST_HOME) init --demo
	$(BIN)/etrust --home $(ETRUST_HOME) serve --host $(HOST) --port $(PORT)

system-deps:
	@sh scripts/system-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

contracts: install
	$(BIN)/lint-imports

pytest: install system-deps
	$(BIN)/pytest

test: system-deps lint typecheck contracts pytest

bench: install
	@sh scripts/system-deps.sh wrk
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
