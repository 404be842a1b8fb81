# One Makefile for people and CI. Every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Every dependency (runtime, dev tools, pip and the build backend), pinned and hashed: a fresh
# machine installs exactly what CI tested. Refresh it with `make lock` after changing
# pyproject.toml's dependencies; review and commit the diff.
LOCK   := requirements.lock
UV_VERSION := 0.13.9
# pip-audit asks PyPI's JSON API per release (`osv` is the other choice).
AUDIT_SERVICE ?= pypi
# The store's tests and bench part 7 start a real PostgreSQL (installed through apt when missing).
ENSURE_POSTGRES := sh scripts/ensure-package.sh postgresql "the PostgreSQL tests" postgres \
	'/usr/lib/postgresql/*/bin/postgres'

.PHONY: install test test-fast lint cog audit lock demo sandbox bench chaos

install: $(STAMP)

# Reinstall only when the dependency list or its lock changes. Hashes are required; pip check
# fails if the lock is missing something pyproject.toml asks for (run `make lock`).
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Resolve pyproject.toml (with the dev extra) and requirements/build.in for every platform from
# Python 3.11 up, with the hash of every file. Needs only python3 and PyPI. Pins already in the
# lock are kept where they still fit; LOCK_FLAGS=--upgrade (or --upgrade-package NAME) moves them.
LOCK_FLAGS ?=
lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml requirements/build.in --extra dev --generate-hashes \
		--universal --python-version 3.11 --quiet $(LOCK_FLAGS) -o $(LOCK)
	@echo "$(LOCK) refreshed: review 'git diff $(LOCK)', then 'make install' and commit it"

test: install
	@sh scripts/ensure-package.sh chromium "the report's browser test" chromium chromium-browser
	@$(ENSURE_POSTGRES)
	$(BIN)/python -m pytest -q -n auto

# The suite without the end-to-end tests that spawn processes or wait for renders (`-m slow`).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# mypy: strict on batch/ and tests/ (pyproject.toml). cog: the README's generated tables.
lint: install
	$(BIN)/ruff check batch tests scripts bench
	$(BIN)/ruff format --check batch tests scripts bench
	$(BIN)/mypy
	$(BIN)/cog --check README.md

# Run it wherever the advisory service answers (PyPI's JSON API or OSV): it is not reachable from
# the machines this project is built on, and an audit that cannot ask must not pass, so it is kept
# out of `lint` (which must pass offline) and run on its own.

# Known advisories in every locked package. --strict: a package the service cannot answer for
# fails the audit (otherwise pip-audit skips it and passes having checked nothing).
audit: install
	@$(BIN)/pip-audit --strict --require-hashes --disable-pip --progress-spinner off \
		--vulnerability-service $(AUDIT_SERVICE) -r $(LOCK) || { \
		echo "make audit: FAILED. Either a locked package has a known advisory (listed above:" \
		"raise its floor in pyproject.toml, then make lock), or the advisory service" \
		"($(AUDIT_SERVICE)) could not answer ('not found on PyPI' / connection errors): then" \
		"nothing was audited. Try AUDIT_SERVICE=osv, or run it where the service is reachable." >&2; \
		exit 1; }

# Regenerates the README's blocks marked [[[cog ... ]]] from the code (see batch/cli/docs.py).
cog: install
	$(BIN)/cog -r README.md

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
# BENCH_QUICK=1 shortens the parts paced by a 20/min limit (the bench's length is then not
# reported). The figures land in docs/bench-figures.json too; the README's table comes from them.
bench: install
	@$(ENSURE_POSTGRES)
	$(BIN)/python bench/run_bench.py
	$(BIN)/cog -r README.md

chaos: install
	$(BIN)/python bench/run_chaos.py
