# The README's contract: `make demo` and `make test`. Everything else is a building block.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_NEWEST := .venv-newest
PY := $(VENV)/bin/python
PY_NEWEST := $(VENV_NEWEST)/bin/python

.PHONY: help venv venv-newest test test-unit test-newest test-stack test-lab lint demo demo-down \
        engine images bench recipe-versions

help:
	@echo "make demo        bring up the lab Swarm with the patched recipe and show it converge"
	@echo "make demo-down   remove the demo stack (engine and images stay cached)"
	@echo "make test        unit tests (Drive's pins and newest releases) + lab stack tests"
	@echo "make lint        ruff over the whole tree"
	@echo "make bench       side-by-side benchmarks (probe vs curl, ownership pass vs find/chown)"

venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "need Python >= 3.11 as $(PYTHON)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test,drive]'
	@touch $@

venv-newest: $(VENV_NEWEST)/.stamp
$(VENV_NEWEST)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV_NEWEST)
	$(VENV_NEWEST)/bin/pip install -q -U -e '.[test,drive-newest]'
	@touch $@

lint: venv
	$(VENV)/bin/ruff check .

# Unit tests against Drive v0.21.1's pins.
test-unit: venv
	$(PY) -m pytest tests/unit

# The tests that matter per package version, against the newest releases.
test-newest: venv-newest
	$(PY_NEWEST) -m pytest tests/unit -m newest

# Engine + images + deploy the patched stack + the testinfra suite + tear down.
test-stack: venv
	bash tests/lab/run-stack-tests.sh

# Lab scenarios (late / restarted Collabora, patched vs unpatched).
test-lab: venv
	bash tests/lab/run-lab-tests.sh

test: lint test-unit test-newest test-stack test-lab

engine:
	bash tests/lab/engine/ensure-engine.sh

images: engine
	bash tests/lab/images/build.sh

demo: venv images
	$(PY) tests/lab/lab.py up --variant patched

demo-down: venv
	$(PY) tests/lab/lab.py down

bench: venv
	$(PY) tests/bench/bench_probe.py
	$(PY) tests/bench/bench_perms.py

# Recompute the content-addressed config versions in recipe/abra.robust.sh.
recipe-versions: venv
	$(PY) tests/tools/recipe_versions.py --write
