# make run · make test · make bench — each bootstraps .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cksum pyproject.toml | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.run-$(HASH)
TEST_STAMP := $(VENV)/.test-$(HASH)
RUN_EXTRAS := console,postgres,otel,local,api,gateway
TEST_EXTRAS := $(RUN_EXTRAS),dev,server,semantic
# make test runs the suite in parallel worker processes (pytest-xdist), a test file per
# worker at a time: most tests wait on servers, subprocesses and outages, not on the CPU.
# TEST_WORKERS=0 runs it in one process (so does PYTEST_ARGS="-n 0").
TEST_WORKERS ?= 2
# llama-cpp-python compiles from source: build it for AVX2, not -march=native, whose AMX tile
# instructions fault (SIGSEGV in libggml-cpu) on virtual machines that advertise AMX.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

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
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff format --check core console tests
	$(BIN)/ruff check core console tests
	$(BIN)/mypy core

format: $(TEST_STAMP)
	$(BIN)/ruff format core console tests
	$(BIN)/ruff check --fix core console tests
