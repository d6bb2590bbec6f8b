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

.PHONY: setup test demo lint format clean docs docs-figures

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

# The measured tables of docs/: each benchmark writes docs/figures/<name>.json and .md (machine, versions, commit,
# date, command), then scripts/docs.py copies them into the pages. `make docs-figures` runs them all (about two hours
# on a 2-core CPU, most of it the missing-modality models); `make figure-cache_plan docs` runs one.
FIGURES := figure-speed_64 figure-speed_128 figure-checkpointing figure-cache_plan figure-preprocess figure-tasks_demo \
	figure-tasks_demo_men_rt figure-demo figure-learned_ensemble figure-inferers figure-missing_modality
FIGURE_DIR := docs/figures
.PHONY: $(FIGURES)

docs: setup
	$(PY) scripts/docs.py

docs-figures: $(FIGURES)
	$(PY) scripts/docs.py

# the training tables run in a plain environment, as a user's `python -m monai.bundle` does: without the
# Makefile's GLIBC_TUNABLES, so that the allocator columns compare what they say
figure-speed_64: setup
	env -u GLIBC_TUNABLES $(PY) benchmarks/bench.py --figures $(FIGURE_DIR)/speed_64
figure-speed_128: setup
	env -u GLIBC_TUNABLES $(PY) benchmarks/bench.py --crop 128 --iterations 2 --skip_data --skip_inference --figures $(FIGURE_DIR)/speed_128
figure-checkpointing: setup
	$(PY) benchmarks/memory.py --crop 128 --batches 1,2,4 --iterations 1 --figures $(FIGURE_DIR)/checkpointing
figure-cache_plan: setup
	$(PY) benchmarks/cache_plan.py --figures $(FIGURE_DIR)/cache_plan
figure-preprocess: setup
	$(PY) benchmarks/preprocess_speed.py --figures $(FIGURE_DIR)/preprocess
figure-tasks_demo: setup
	$(PY) benchmarks/tasks_demo.py --out runs/tasks_demo --tasks brats2021 gli ped mets men goat men-rt --num_cases 8 \
		--epochs 6 --figures $(FIGURE_DIR)/tasks_demo
figure-tasks_demo_men_rt: setup
	$(PY) benchmarks/tasks_demo.py --out runs/tasks_demo_men_rt --tasks men-rt --num_cases 8 --epochs 60 \
		--figures $(FIGURE_DIR)/tasks_demo_men_rt
figure-demo: demo
	$(PY) benchmarks/demo_results.py $(DEMO_DIR) --figures $(FIGURE_DIR)/demo
figure-learned_ensemble: figure-demo
	$(PY) benchmarks/learned_ensemble.py --data $(DEMO_DIR)/data --out runs/learned_ensemble --epochs 30 \
		--figures $(FIGURE_DIR)/learned_ensemble
figure-inferers: figure-learned_ensemble
	$(PY) benchmarks/bench.py --skip_training --skip_data --skip_inference --dice_data $(DEMO_DIR)/data \
		--dice_model runs/learned_ensemble/models/fold1/model.pt --figures $(FIGURE_DIR)/inferers
figure-missing_modality: figure-learned_ensemble
	$(PY) benchmarks/missing_modality.py --data $(DEMO_DIR)/data --out runs/missing_modality --epochs 60 \
		--seg_model runs/learned_ensemble/models/fold1/model.pt --figures $(FIGURE_DIR)/missing_modality

lint: setup
	$(VENV)/bin/ruff check custom_nets tests benchmarks scripts
	$(VENV)/bin/ruff format --check custom_nets tests benchmarks scripts

format: setup
	$(VENV)/bin/ruff check --fix custom_nets tests benchmarks scripts
	$(VENV)/bin/ruff format custom_nets tests benchmarks scripts

clean:
	rm -rf $(VENV) $(DEMO_DIR) dist build
