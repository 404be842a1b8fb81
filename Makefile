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
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check batch tests scripts
	$(BIN)/ruff format --check batch tests scripts
	$(BIN)/mypy

sandbox: install
	$(BIN)/jogg-batch sandbox --host 127.0.0.1 --port 8787

# Benchmarks and the chaos suite: reports/bench.{md,json} and reports/chaos.{md,json}.
# BENCH_QUICK=1 shortens the real 20/min quota run from three windows to one.
bench: install
	$(BIN)/python bench/run_bench.py

chaos: install
	$(BIN)/python bench/run_chaos.py
