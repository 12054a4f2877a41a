# Quick start: `make demo` runs the main job end to end; `make test` runs the test suite.
# Both create the virtualenv in .venv on first use (Python 3.11 required).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The benchmarks get their own virtualenv, so dag-factory (a peer they compare with) stays
# out of the product's environment and its tests.
BENCH_VENV := bench/.work/venv
BENCH_INSTALLED := $(BENCH_VENV)/.installed
PYTHON_CHECK := import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required, found " + sys.version.split()[0] + " at " + sys.executable + "; run make PYTHON=/path/to/python3.11")

.PHONY: help venv demo test up up-distributed bench schema clean

help:
	@echo "make demo    run the sample rollback end to end through Airflow (SQLite)"
	@echo "make test    run the whole test suite"
	@echo "make up      start the local Airflow stack on http://127.0.0.1:8080 with the demo batches"
	@echo "make up-distributed  the production layout as processes: PostgreSQL, Redis, two Celery workers"
	@echo "make bench   run the benchmarks (about 10 min; see docs/benchmarks.md)"
	@echo "make schema  regenerate config/services.schema.json from the models"
	@echo "make clean   remove the virtualenv and generated data"

$(INSTALLED): requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c '$(PYTHON_CHECK)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/python -m rollback_coordinator.demo

test: $(INSTALLED)
	$(BIN)/pytest

up: $(INSTALLED)
	$(BIN)/python -m rollback_coordinator.demo.stack

up-distributed: $(INSTALLED)
	$(BIN)/python -m rollback_coordinator.demo.distributed

$(BENCH_INSTALLED): requirements.txt bench-requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c '$(PYTHON_CHECK)'
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r bench-requirements.txt -c constraints.txt
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

bench: $(BENCH_INSTALLED)
	$(BENCH_VENV)/bin/python bench/run.py

schema: $(INSTALLED)
	$(BIN)/python tools/generate_schema.py

clean:
	rm -rf $(VENV) .demo .stack .distributed .pytest_cache bench/.work
