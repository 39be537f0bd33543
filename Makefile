# make run · make test · make bench — each bootstraps .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cksum pyproject.toml | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.run-$(HASH)
TEST_STAMP := $(VENV)/.test-$(HASH)
RUN_EXTRAS := console,postgres,otel,local,api,gateway
TEST_EXTRAS := $(RUN_EXTRAS),dev,server,semantic

.PHONY: run test bench lint format

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[$(RUN_EXTRAS)]"
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[$(TEST_EXTRAS)]"
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	COSTLINE_DEMO=$${COSTLINE_DEMO:-1} $(BIN)/costline console

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff format --check core console tests
	$(BIN)/ruff check core console tests
	$(BIN)/mypy core

format: $(TEST_STAMP)
	$(BIN)/ruff format core console tests
	$(BIN)/ruff check --fix core console tests
