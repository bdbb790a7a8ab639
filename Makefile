PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench chaos clean

# The venv is created and the project installed (editable, with test tools) on first use,
# and again whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# Bytecode up front: the workflow sandbox imports journey modules afresh for every run.
	$(BIN)/python -m compileall -q workflows models
	touch $(STAMP)

run: $(STAMP)  ## the embedded default: dev server + UI, worker, API, outbox channel, demo data
	COMEBACK_JOURNEYS=config/journeys.demo.toml $(BIN)/comeback dev --demo

test: $(STAMP)  ## the whole suite (SQLite, PostgreSQL, time skipping, dev server, replay) and lint
	$(BIN)/pytest -q
	$(MAKE) lint

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache

bench: $(STAMP)  ## the benchmarks (about 35 minutes); each prints its figures and appends them to bench/RESULTS.md
	$(BIN)/python -m bench.cost
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.intake_load
	$(BIN)/python -m bench.idle
	$(BIN)/python -m bench.reengage

chaos: $(STAMP)  ## 500 journeys while the worker is SIGKILLed every 2-6 s and the dev server restarted once (about 3 minutes); lost and duplicated messages, appended to bench/RESULTS.md
	$(BIN)/python -m bench.chaos --journeys 500 --duration 90
