# stacbatch: `make demo` and `make test` each do their whole set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_VERSION := $(shell cat .python-version)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Real peers for the tests (PostgreSQL + PostGIS + pgstac + stac-fastapi-pgstac): tests/peers/install.sh
PEERS := .peers
PEERS_STAMP := $(PEERS)/.installed

.PHONY: help venv peers demo test lint typecheck docs unit fuzz bench clean

help:
	@echo "make demo   set up, then load the bundled sample into ./demo-stage, query it and emit it"
	@echo "make test   set up, then ruff, mypy and the test suite"
	@echo "make docs   set up, then build the documentation site into site/"
	@echo "make fuzz   set up, then the C kernel's fuzz tests under AddressSanitizer and UBSan"
	@echo "make bench  set up, then benchmarks against stac-geoparquet, rustac and pystac"

# A Python 3.12 virtual environment: pyenv's 3.12 when present, else any python3.12 on PATH.
$(PY):
	@set -e; \
	if command -v pyenv >/dev/null 2>&1 && pyenv prefix $(PYTHON_VERSION) >/dev/null 2>&1; then \
	  base="$$(pyenv prefix $(PYTHON_VERSION))/bin/python"; \
	elif command -v python$(PYTHON_VERSION) >/dev/null 2>&1; then base="$$(command -v python$(PYTHON_VERSION))"; \
	else echo "need Python $(PYTHON_VERSION) (pyenv install $(PYTHON_VERSION), or apt-get install python$(PYTHON_VERSION))"; exit 1; fi; \
	"$$base" -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml setup.py stacbatch/kernel/_kernel.c stacbatch/kernel/_kernel_scan.h stacbatch/kernel/_kernel_patch.h stacbatch/kernel/_kernel_parquet.h stacbatch/kernel/_kernel_wkt.h stacbatch/kernel/_kernel_assemble.h stacbatch/kernel/_kernel_props.h stacbatch/kernel/_kernel_assets.h
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,docs,notebook]'
	touch $(STAMP)

venv: $(STAMP)

$(PEERS_STAMP): tests/peers/install.sh | $(PY)
	tests/peers/install.sh "$(abspath $(PY))" "$(PEERS)"

peers: $(PEERS_STAMP)

demo: $(STAMP)
	$(PY) -m stacbatch.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check stacbatch tests bench
	$(VENV)/bin/ruff format --check stacbatch tests bench
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP) $(PEERS_STAMP)
	STACBATCH_REQUIRE_PEERS=1 STACBATCH_REQUIRE_KERNEL=1 $(PY) -m pytest -q

# The site: the CLI reference is generated from the typer app, the Python API reference from docstrings, and the
# notebooks are run on the bundled sample and shown with their outputs.
docs: $(STAMP)
	$(VENV)/bin/typer stacbatch.cli._main utils docs --name stacbatch --title "Command line" --output docs/reference/cli.md
	$(PY) notebooks/run.py docs/notebooks
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The kernel built with AddressSanitizer and UBSan, under its fuzz tests (mutated, random and real bytes).
fuzz: $(STAMP)
	tests/fuzz/sanitized.sh "$(abspath $(PY))"

test: lint typecheck docs unit fuzz

bench: $(STAMP) $(PEERS_STAMP)
	$(PY) -m pip install -q "rustac>=0.9"
	@# byte-compile as a wheel install would (this checkout is an editable install; PYTHONDONTWRITEBYTECODE may be set)
	$(PY) -m compileall -q stacbatch >/dev/null
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(PEERS) demo-stage demo-out .pytest_cache .mypy_cache .ruff_cache
