# The two quick-start commands: `make demo` (set up, then train, evaluate and infer on the embedded synthetic
# dataset) and `make test` (set up, then run the test suite). `.ci/run` calls `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo
TORCH_VERSION ?= 2.13.0
# two pytest workers, one test file each at a time (a file's fixtures are built once): most tests wait on
# subprocesses that import torch and MONAI, which two workers overlap on two cores
TEST_WORKERS ?= 2

# glibc hands large freed blocks back to the kernel and faults them in again every iteration; keeping them
# halves a CPU training step (../shared/REFERENCE.md section 4).
export GLIBC_TUNABLES ?= glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736:glibc.malloc.top_pad=1073741824

.PHONY: setup test demo lint format clean

setup: $(VENV)/.installed

# CPU torch first and pinned: an unpinned torch (monai pulls one) would download a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

test: setup
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile

demo: setup
	PYTHON=$(abspath $(PY)) DEMO_DIR=$(abspath $(DEMO_DIR)) bash scripts/demo.sh

lint: setup
	$(VENV)/bin/ruff check custom_nets tests benchmarks scripts
	$(VENV)/bin/ruff format --check custom_nets tests benchmarks scripts

format: setup
	$(VENV)/bin/ruff check --fix custom_nets tests benchmarks scripts
	$(VENV)/bin/ruff format custom_nets tests benchmarks scripts

clean:
	rm -rf $(VENV) $(DEMO_DIR) dist build
