# dermsight — the two commands a newcomer needs:
#   make serve   set up (core install) and start the app on the shipped default model
#   make test    set up everything (train/spark/dev extras, Chromium, front-end) and run all tests
# .ci/run calls `make test`.

SHELL := /bin/bash
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
TCMALLOC := /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
PYTEST_ARGS ?=

.PHONY: serve test check setup-core setup-all setup-py system-deps frontend check-frontend lint \
        lint-py test-frontend gate-pictures train bench bench-model bench-api bench-batch bench-clinic clean \
        sys-tcmalloc sys-java sys-postgresql

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup-core: $(BIN)/python
	$(BIN)/pip install -q -r requirements/core.txt
	$(BIN)/pip install -q --no-deps -e .

serve: setup-core
	$(BIN)/dermsight serve --host $(HOST) --port $(PORT) $(SERVE_ARGS)

system-deps: sys-postgresql
	@if ! command -v chromium >/dev/null || ! command -v java >/dev/null || [ ! -e $(TCMALLOC) ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver libtcmalloc-minimal4 openjdk-17-jre-headless >/dev/null; fi

# One system package each, for the targets that need only that one (train, bench-*); apt runs
# only when it is missing. system-deps installs the first two together with Chromium.
sys-tcmalloc:
	@if [ ! -e $(TCMALLOC) ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq libtcmalloc-minimal4 >/dev/null; fi
sys-java:
	@if ! command -v java >/dev/null; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq openjdk-17-jre-headless >/dev/null; fi
# PostgreSQL server binaries (initdb, pg_ctl): the clinic storage tests start a throwaway one
sys-postgresql:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql \
	    >/dev/null; fi

setup-all: setup-py system-deps

# the Python side of setup-all only (no apt): what `make check` needs; it installs again only
# when a requirements file or pyproject.toml changed (the stamp), so the loop runs offline
setup-py: $(VENV)/.setup-py.stamp

$(VENV)/.setup-py.stamp: $(BIN)/python requirements/all.txt requirements/core.txt pyproject.toml
	$(BIN)/pip install -q -r requirements/all.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

frontend:
	cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build

# the front end's own unit tests (vitest), run by make test
test-frontend: frontend
	cd frontend && npm test

# CI rebuilds the UI and checks that the committed build (what the package serves) matches.
check-frontend: frontend
	@if [ -n "$$(git status --porcelain -- src/dermsight/web/static)" ]; then \
	  git status --short -- src/dermsight/web/static; \
	  echo "the committed UI build differs from frontend/ sources: run 'make frontend' and commit"; \
	  exit 1; fi

lint: setup-all lint-py

# setup-py runs once per make command: lint, check and test name it too
lint-py: setup-py
	$(BIN)/ruff check src tests benchmarks tools docs
	$(BIN)/mypy

# The fast loop before a commit: ruff + mypy + the tests that need no browser, Spark or slow
# runs. No apt, no npm; `make test` (CI) still runs everything.
check: setup-py lint-py
	$(BIN)/pytest -q -x -m "not slow and not browser and not spark" $(PYTEST_ARGS)

test: setup-all check-frontend test-frontend lint
	PYSPARK_PYTHON=$(abspath $(BIN)/python) $(BIN)/pytest $(PYTEST_ARGS)

# The gate's outlier-exposure pictures (Debian wallpapers and clip art): without them training
# fits the "cannot assess" gate on fewer negatives and does not rebuild the shipped gate.
# The package list and the check are training's own (dermsight.evaluate.negatives).
gate-pictures: setup-py
	@missing="$$($(BIN)/python -c 'from dermsight.evaluate.negatives import system_pictures_missing as m; print(*m())')" || exit 1; \
	if [ -n "$$missing" ]; then apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

# Reproduce the shipped default model (see README / model card), then copy it into the package.
# Needs tcmalloc and the gate pictures (apt when missing), not Chromium, Java or PostgreSQL.
train: setup-py sys-tcmalloc gate-pictures
	LD_PRELOAD=$(TCMALLOC) $(BIN)/dermsight train --config configs/default.yaml --out runs/default \
	  --bundle src/dermsight/assets/default

# Each benchmark installs only what it runs: training with and without tcmalloc (bench-model),
# Spark's JVM (bench-batch), a throwaway PostgreSQL cluster (bench-clinic).
bench-model: setup-py sys-tcmalloc
	$(BIN)/python benchmarks/bench_model.py
bench-api: setup-py
	$(BIN)/python benchmarks/bench_api.py
bench-batch: setup-py sys-java
	PYSPARK_PYTHON=$(abspath $(BIN)/python) $(BIN)/python benchmarks/bench_batch.py
# clinic mode: 8 clients x 2,000 visits on PostgreSQL (a throwaway cluster) and on SQLite
bench-clinic: setup-py sys-postgresql
	$(BIN)/python benchmarks/bench_clinic.py
bench: bench-model bench-api bench-batch bench-clinic

clean:
	rm -rf $(VENV) frontend/node_modules test-output .pytest_cache
