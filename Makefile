# One Makefile for people and CI. Every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo sandbox bench chaos

install: $(STAMP)

# Reinstall only when the project's dependency list changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	@sh scripts/ensure-chromium.sh
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check batch tests scripts bench
	$(BIN)/ruff format --check batch tests scripts bench
	$(BIN)/mypy

sandbox: install
	$(BIN)/jogg-batch sandbox --host 127.0.0.1 --port 8787

# The main job on the bundled sample catalog, against a sandbox started in-process (no account).
# Each demo starts afresh: the sandbox forgets its videos when it stops.
DEMO := out/demo
demo: install
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	@# Exit 1 is expected: the sample holds 5 deliberately invalid rows.
	$(BIN)/jogg-batch run sample_data/catalog.csv --sandbox --wait --timeout 2m \
		--results $(DEMO)/catalog.results.csv --summary-json $(DEMO)/summary.json || [ $$? -eq 1 ]
	$(BIN)/jogg-batch report $(DEMO)/catalog.results.csv
	$(BIN)/jogg-batch report $(DEMO)/catalog.results.csv --format html --output $(DEMO)/report.html
	@echo "results: $(DEMO)/catalog.results.csv   report: $(DEMO)/report.html"

# Benchmarks and the chaos suite: reports/bench.{md,json} and reports/chaos.{md,json}.
# BENCH_QUICK=1 shortens the real 20/min quota run from three windows to one.
bench: install
	$(BIN)/python bench/run_bench.py

chaos: install
	$(BIN)/python bench/run_chaos.py
