# homevalue — run `make` (or `make help`) to list the targets.
# Each target is documented by the `## ...` comment on the line just above it.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON3 ?= python3
PORT ?= 8866
CONSTRAINTS := .ci/constraints.txt
# pip warns once per line about find-links/index locations that do not exist on this
# machine; the warnings are harmless, so they are dropped (pip's exit status is kept).
PIP_NOISE := is ignored: it is neither

.PHONY: help install serve test lint format model bench lock lab clean distclean

## Show this help
help:
	@echo "Usage: make <target>   (variables: VENV=$(VENV) PORT=$(PORT))"
	@echo
	@awk '/^## /{doc = substr($$0, 4); next} \
	     /^[a-zA-Z_-]+:/ && doc {split($$0, t, ":"); printf "  %-10s %s\n", t[1], doc} \
	     {doc = ""}' $(MAKEFILE_LIST)

## Create .venv and install homevalue[test] within .ci/constraints.txt
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PY) -m pip install -c $(CONSTRAINTS) -e '.[test]' 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	touch $@

## Serve notebooks/ with Voilà on http://localhost:8866/ (PORT=... to change)
serve: $(VENV)/.installed
	mkdir -p notebooks
	@echo "Serving on http://localhost:$(PORT)/"
	$(VENV)/bin/voila --no-browser --port=$(PORT) notebooks/

## Lint, then run the whole test suite (what CI runs)
test: $(VENV)/.installed
	$(MAKE) lint
	$(PY) -m pytest

## Check code style with ruff (lint + format check)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

## Reformat the code and apply ruff's safe fixes
format: $(VENV)/.installed
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

## Retrain the model into model/
model: $(VENV)/.installed
	$(PY) -m homevalue.train

## Run the benchmarks (writes docs/benchmarks.json and docs/benchmarks.md)
bench: $(VENV)/.installed
	$(PY) tests/benchmarks/bench_core.py

## Rewrite .ci/constraints.txt from the packages installed in .venv
lock:
	@test -x $(PY) || { echo "$(PY) not found: run 'make install' first" >&2; exit 1; }
	mkdir -p $(dir $(CONSTRAINTS))
	{ echo "# Full lock of $(VENV), written by 'make lock' ($(PY) -m pip freeze --exclude-editable). Do not edit."; \
	  $(PY) -m pip freeze --exclude-editable; \
	} > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)

## Open the notebooks in JupyterLab
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

## Remove caches (__pycache__, .pytest_cache, .ruff_cache, .hypothesis)
clean:
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .hypothesis

## clean, then remove .venv
distclean: clean
	rm -rf $(VENV)
