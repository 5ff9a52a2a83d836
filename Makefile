# homevalue — run `make` (or `make help`) to list the targets.
# Each target is documented by the `## ...` comment on the line just above it.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON3 ?= python3
PORT ?= 8866
# `make serve-replicas`: how many Voilà servers behind nginx on PORT, their ports
# (comma-separated; default PORT+1, PORT+2, ...) and the folder for nginx's config, pid and
# the logs (default: a new folder in $TMPDIR).
REPLICAS ?= 2
REPLICA_PORTS ?=
RUN_DIR ?=
# The folder `make serve` and `make lab` open (the tests serve a temporary one).
NOTEBOOKS ?= notebooks
# Extra Voilà options for `make serve` on top of voila.json, e.g. the benchmark's
# VOILA_ARGS=--preheat_kernel=False (the defaults are right for viewers).
VOILA_ARGS ?=
# Extra JupyterLab options for `make lab`, e.g. LAB_ARGS='--no-browser --port=8890'.
LAB_ARGS ?=
# `make lab` adds this folder to Jupyter's config path: its lab settings overrides keep the
# widget manager from saving widget state into notebooks (README "Add a panel").
LAB_CONFIG := deploy/jupyterlab
CONSTRAINTS := .ci/constraints.txt
# Airflow (deploy/airflow/) in a virtual environment of its own, so its pins never meet ours:
# its requirement and the full lock of that environment (`make airflow-lock` rewrites it).
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_REQUIREMENTS := deploy/airflow/requirements.txt
AIRFLOW_CONSTRAINTS := deploy/airflow/constraints.txt
# pip warns once per line about find-links/index locations that do not exist on this
# machine; the warnings are harmless, so they are dropped (pip's exit status is kept).
PIP_NOISE := is ignored: it is neither
# The Voilà template ships as hatch shared-data, which pip copies into $(VENV)/share even
# for an editable install: a changed template file means reinstalling.
TEMPLATE_FILES := $(shell find share/jupyter/voila/templates/homevalue -type f 2>/dev/null)
# Jupyter refuses to run as root unless told to (containers, CI machines).
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
# The chromium the browser tests and `make screenshots` drive: this path (or command) if
# given, else the first of chromium, chromium-browser, google-chrome... on PATH, else
# /usr/bin/chromium; none: `make test` installs Debian's with apt-get when run as root, or
# says how to get one (tests/browser/chromium.py, the one lookup).
CHROMIUM ?=
export CHROMIUM
# Extra pytest arguments for `make test`; PYTEST_ARGS='-m "not browser"' runs every test
# but the browser ones, and needs no chromium.
PYTEST_ARGS ?=

.PHONY: help install serve serve-replicas api test lint format model bench lock lab notebooks screenshots clean distclean \
        airflow-venv airflow-test airflow-lock

## Show this help
help:
	@echo "Usage: make <target>   (variables: VENV=$(VENV) PORT=$(PORT) NOTEBOOKS=$(NOTEBOOKS))"
	@echo
	@awk '/^## /{doc = substr($$0, 4); next} \
	     /^[a-zA-Z_-]+:/ && doc {split($$0, t, ":"); printf "  %-12s %s\n", t[1], doc} \
	     {doc = ""}' $(MAKEFILE_LIST)

## Create .venv and install homevalue[test] within .ci/constraints.txt
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) $(TEMPLATE_FILES)
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PY) -m pip install -c $(CONSTRAINTS) -e '.[test]' 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PY) -m homevalue.compiled  # compile model/'s trees into the cache (~12 s; README "Performance")
	touch $@

## Serve notebooks/ with Voilà on http://localhost:8866/ (PORT=... to change; settings in voila.json; limits in README "Deployment")
serve: $(VENV)/.installed
	mkdir -p $(NOTEBOOKS)
	@echo "Serving $(NOTEBOOKS)/ on http://localhost:$(PORT)/"
	$(PY) -m homevalue.dashboards --no-browser --port=$(PORT) --Voila.port_retries=0 $(VOILA_ARGS) $(NOTEBOOKS)/

## Serve notebooks/ with REPLICAS=2 Voilà servers behind nginx on PORT, each viewer kept on one (README "Several servers")
serve-replicas: $(VENV)/.installed
	mkdir -p $(NOTEBOOKS)
	$(PY) -m homevalue.dashboards.replicas --replicas=$(REPLICAS) --port=$(PORT) \
	    --notebooks=$(NOTEBOOKS) --voila-args='$(VOILA_ARGS)' \
	    $(if $(REPLICA_PORTS),--replica-ports=$(REPLICA_PORTS)) $(if $(RUN_DIR),--run-dir=$(RUN_DIR))

## Serve the prediction API on http://127.0.0.1:8000/ (docs at /docs; API_PORT=... API_WORKERS=... API_HOST=...)
api: $(VENV)/.installed
	$(PY) -m homevalue.api $(strip $(if $(API_HOST),--host=$(API_HOST)) \
	    $(if $(API_PORT),--port=$(API_PORT)) $(if $(API_WORKERS),--workers=$(API_WORKERS)))

## Lint, find or install chromium, then run the whole test suite (what CI runs; PYTEST_ARGS=...)
test: $(VENV)/.installed
	$(MAKE) lint
	$(if $(findstring not browser,$(PYTEST_ARGS)),,$(PY) tests/browser/chromium.py --install)
	$(PY) -m pytest $(PYTEST_ARGS)

## Check code style with ruff (lint + format check)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests deploy/airflow
	$(VENV)/bin/ruff format --check src tests deploy/airflow

## Reformat the code and apply ruff's safe fixes
format: $(VENV)/.installed
	$(VENV)/bin/ruff format src tests deploy/airflow
	$(VENV)/bin/ruff check --fix src tests deploy/airflow

## Create .venv-airflow: Airflow alone, pinned by deploy/airflow/constraints.txt, and a migrated metadata db
airflow-venv: $(AIRFLOW_VENV)/.installed

# Rebuilt from nothing when the pins change, so nothing of an older Airflow stays behind. The
# metadata database is migrated once here (a test copies it instead of migrating again).
$(AIRFLOW_VENV)/.installed: $(AIRFLOW_REQUIREMENTS) $(AIRFLOW_CONSTRAINTS)
	rm -rf $(AIRFLOW_VENV)
	$(PYTHON3) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install -c $(AIRFLOW_CONSTRAINTS) pip 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(AIRFLOW_VENV)/bin/python -m pip install -c $(AIRFLOW_CONSTRAINTS) -r $(AIRFLOW_REQUIREMENTS) 2>&1 \
	    | { grep -v "$(PIP_NOISE)" || true; }
	mkdir -p $(AIRFLOW_VENV)/metadata
	AIRFLOW_HOME=$(abspath $(AIRFLOW_VENV))/metadata AIRFLOW__CORE__LOAD_EXAMPLES=False \
	    $(AIRFLOW_VENV)/bin/airflow db migrate >$(AIRFLOW_VENV)/metadata/migrate.log 2>&1 \
	    || { tail -n 30 $(AIRFLOW_VENV)/metadata/migrate.log >&2; exit 1; }
	touch $@

## Run the Airflow DAG with `airflow dags test` against a temporary batch folder (README "Airflow")
airflow-test: $(VENV)/.installed $(AIRFLOW_VENV)/.installed
	$(PY) -m pytest -o addopts="" -p no:cacheprovider tests/test_airflow_dag.py

## Rewrite deploy/airflow/constraints.txt from the packages installed in .venv-airflow
airflow-lock:
	@test -x $(AIRFLOW_VENV)/bin/python || { echo "no $(AIRFLOW_VENV): run 'make airflow-venv' first" >&2; exit 1; }
	{ echo "# Full lock of $(AIRFLOW_VENV) (Airflow's own environment), written by 'make airflow-lock'. Do not edit."; \
	  $(AIRFLOW_VENV)/bin/python -m pip freeze --all; \
	} > $(AIRFLOW_CONSTRAINTS).tmp
	mv $(AIRFLOW_CONSTRAINTS).tmp $(AIRFLOW_CONSTRAINTS)

## Retrain the model into model/
model: $(VENV)/.installed
	$(PY) -m homevalue.train
	$(PY) -m homevalue.compiled

## Run the benchmarks (writes docs/benchmarks.json and docs/benchmarks.md)
bench: $(VENV)/.installed
	$(PY) tests/benchmarks/bench_core.py
	$(PY) tests/benchmarks/bench_dashboards.py
	$(PY) tests/benchmarks/bench_api.py
	$(PY) tests/benchmarks/bench_security.py

## Rewrite .ci/constraints.txt from the packages installed in .venv
lock:
	@test -x $(PY) || { echo "$(PY) not found: run 'make install' first" >&2; exit 1; }
	mkdir -p $(dir $(CONSTRAINTS))
	{ echo "# Full lock of $(VENV), written by 'make lock' ($(PY) -m pip freeze --exclude-editable). Do not edit."; \
	  $(PY) -m pip freeze --exclude-editable; \
	} > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)

## Open the notebooks in JupyterLab (the Voilà button previews a page; saving keeps no widget state)
lab: $(VENV)/.installed
	mkdir -p $(NOTEBOOKS)
	JUPYTER_CONFIG_PATH=$(CURDIR)/$(LAB_CONFIG)$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH} \
	$(VENV)/bin/jupyter lab $(LAB_ROOT_FLAG) \
	    --ServerApp.tornado_settings='{"websocket_max_message_size": 104857600}' \
	    --ContentsManager.pre_save_hook=homevalue.notebook_files.pre_save_hook \
	    $(LAB_ARGS) $(NOTEBOOKS)/

## Re-run the pages and store their outputs (after a change to what a page shows; review with nbdiff)
notebooks: $(VENV)/.installed
	$(PY) tests/refresh_notebooks.py

## Screenshots of every page, light and dark, into docs/screenshots/ (chromium as for `make test`)
screenshots: $(VENV)/.installed
	$(PY) tests/browser/chromium.py --install
	$(PY) tests/browser/screenshots.py docs/screenshots

## Remove caches (__pycache__, .pytest_cache, .ruff_cache, .hypothesis)
clean:
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .hypothesis

## clean, then remove .venv and .venv-airflow
distclean: clean
	rm -rf $(VENV) $(AIRFLOW_VENV)
