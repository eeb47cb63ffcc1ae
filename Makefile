# Two entry points: `make demo` (set up, run the demo sweep, print the report path) and
# `make test` (set up with test extras, run the whole suite). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Stamps re-run the install when pyproject.toml changes.
BASE_STAMP := $(VENV)/.installed-base
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-unit clean

$(BASE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(TEST_STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# A fresh demo every time: the sweep folder is rebuilt from the seed.
demo: $(BASE_STAMP)
	rm -rf runs/demo
	OMP_NUM_THREADS=1 $(BIN)/leaksweep sweep sweeps/demo.yaml --workers 2

test: $(TEST_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-unit: $(TEST_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not integration"

clean:
	rm -rf runs .pytest_cache
