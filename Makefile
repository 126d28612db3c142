# wschat: `make run` serves the chat locally, `make test` runs the whole suite.
# Both create .venv and install what they need on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test lint typecheck unit bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/wschat serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP)
	bash scripts/test-deps.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

$(BENCH_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# W1-W7 side by side with the ceilings and the peer (bench/README.md), at most 10 minutes:
# prints the tables, rewrites docs/benchmarks.md and docs/bench/*.png. ARGS="--only w3" etc.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(ARGS)

# `sam validate --lint` on template.yaml, with the SAM CLI in a virtualenv of its own
# (scripts/install-sam.sh); make test already runs cfn-lint and checkov on it.
.PHONY: validate
validate: $(STAMP)
	bash scripts/install-sam.sh
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-ap-northeast-2} .venv/tools/sam/bin/sam validate --lint --template template.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The chat as people use it: chromium pages (tests/browser) and the terminal client.
.PHONY: e2e
e2e: $(STAMP)
	bash scripts/test-deps.sh
	$(BIN)/python -m pytest -q tests/browser tests/integration/test_terminal_client.py

# Bounded soak, loopback only (bench/soak.py): 2,000 clients in 50 rooms for 60 s, a flooding
# client in every other segment; exits 1 when a delivery is lost or repeated, memory grows or
# the flooder lifts the others' p99 past its bound. The one make test runs: ARGS=--small.
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(ARGS)

# Faults, load, bad input and security, run and counted (a few minutes): rewrites
# docs/reliability.md with the figures, the date and the machine.
.PHONY: reliability
reliability: $(STAMP)
	$(BIN)/python bench/reliability.py $(ARGS)
