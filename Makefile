# Two commands for a fresh machine with Python 3.11+:
#   make run    installs ffe in .venv and starts the dashboard, API and paper agent (ffe run)
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
	$(BIN)/ffe run --strategy sma_cross --symbol SP500 --param fast=10 --param slow=20

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

# The benchmarks run ffe compiled with mypyc (see [tool.hatch.build.targets.wheel.hooks.mypyc]
# in pyproject.toml), installed as a wheel in a virtualenv of their own so that $(VENV) stays
# editable and pure Python. The hook compiles next to the sources it is given, so the wheel is
# built from a temporary copy of the tree: no .so ever lands in src/ (it would shadow the .py).
BENCH_VENV ?= .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin

$(BENCH_BIN)/python:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip

$(BENCH_VENV)/.installed: pyproject.toml README.md .gitignore $(shell find src -name '*.py') \
		| $(BENCH_BIN)/python
	copy=$$(mktemp -d) && trap 'rm -rf "$$copy"' EXIT && \
		cp -R pyproject.toml README.md .gitignore src "$$copy"/ && \
		HATCH_BUILD_HOOK_ENABLE_MYPYC=true \
		$(BENCH_BIN)/python -m pip install $(PIP_FLAGS) "$$copy[bench]"
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_BIN)/python -m bench.bench_single_asset
	$(BENCH_BIN)/python -m bench.bench_multi_asset
	$(BENCH_BIN)/python -m bench.bench_journal
	$(BENCH_BIN)/python -m bench.bench_decisions
	$(BENCH_BIN)/python -m bench.bench_agent
	$(BENCH_BIN)/python -m bench.bench_api

clean:
	rm -rf $(VENV) $(BENCH_VENV) reports .mypy_cache .ruff_cache .pytest_cache
