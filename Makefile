# Two commands for a fresh machine with Python 3.11+:
#   make run    installs ffe in .venv and runs the demo backtest on bundled data
#   make test   installs the dev tools and runs lint, types, import contracts and tests

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_FLAGS ?= --disable-pip-version-check --quiet

.PHONY: run test lint types imports pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/ffe backtest run --strategy sma_cross --symbol SP500 --param fast=10 --param slow=20 \
		--cash 10000 --commission 0.002 --report reports/demo.html

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

types: $(VENV)/.installed-dev
	$(BIN)/mypy

imports: $(VENV)/.installed-dev
	$(BIN)/lint-imports

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest -n 2 -q

test: lint types imports pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[bench]'
	$(BIN)/python -m bench.bench_single_asset
	$(BIN)/python -m bench.bench_multi_asset

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache .pytest_cache
