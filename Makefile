# kltools and the book. The two commands a fresh machine needs: `make book` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= tiny
CH ?=
# pytest-xdist workers for make test (one torch thread each); TEST_WORKERS=0 runs in one process
TEST_WORKERS ?= 2
PARAMS ?= params/$(PROFILE).yaml
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONHASHSEED ?= 0
# The rehearsal of the pythia profile (params/rehearsal.yaml): the hub path offline, on the
# rehearsal hub's small models (kltools rehearsal build), with stores apart from real pythia runs.
REHEARSAL_ROOT := $(CURDIR)/rehearsal-hub
REHEARSAL_ENV := HF_HUB_CACHE=$(REHEARSAL_ROOT)/hub HF_HUB_OFFLINE=1 KLTOOLS_DATA_ROOT=$(REHEARSAL_ROOT)/data
ifeq ($(PARAMS),params/rehearsal.yaml)
export HF_HUB_CACHE := $(REHEARSAL_ROOT)/hub
export HF_HUB_OFFLINE := 1
export KLTOOLS_DATA_ROOT := $(REHEARSAL_ROOT)/data
endif

.PHONY: help env test book rehearsal rehearsal-book book-check results teach suite chapter bench gpu-check lint format clean distclean

help:
	@echo "make book      build the suite (if missing), execute every chapter, render _build/html (PROFILE=tiny|smoke|pythia)"
	@echo "make test      run the test suite"
	@echo "make chapter CH=<name> PARAMS=<file>   rerun one chapter with a parameter file"
	@echo "make rehearsal-book  the pythia profile rehearsed offline on a CPU: builds rehearsal-hub/, then"
	@echo "                     every chapter with params/rehearsal.yaml through the hub code path, and checks it"
	@echo "make book-check  check the rendered book, every page in headless Chromium too (PROFILE=...)"
	@echo "make results   the pairs and verdicts every executed chapter wrote (FORMAT=text|json|csv)"
	@echo "make teach     student (no solutions) and teacher versions of every chapter in build/teach"
	@echo "make suite     build the offline model suite (PROFILE=tiny|smoke)"
	@echo "make bench     extraction benchmarks (ratios against baselines, one process)"
	@echo "make gpu-check the CUDA checks, for a machine with one GPU (DRY=1: CPU dry run)"
	@echo "make lint      ruff check + format check"

# The environment: a venv from the exact pins in requirements.lock. torch goes first, pinned,
# so that pip takes the local CPU wheel instead of a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

env: $(VENV)/.installed

test: env
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

book: env
	$(PY) -m kltools book build --profile $(PROFILE) --params $(PARAMS)

rehearsal: env
	$(PY) -m kltools rehearsal build --root $(REHEARSAL_ROOT)

rehearsal-book: rehearsal
	$(REHEARSAL_ENV) $(PY) -m kltools book build --profile pythia --params params/rehearsal.yaml
	$(REHEARSAL_ENV) $(PY) -m kltools book check --profile pythia

book-check: env
	$(PY) -m kltools book check --profile $(PROFILE) --browser

results: env
	$(PY) -m kltools book results --profile $(PROFILE) --format $(or $(FORMAT),text)

teach: env
	$(PY) -m kltools book teach --out build/teach

chapter: env
	@test -n "$(CH)" || { echo "make chapter: give CH=<chapter name> (see notebooks/)"; exit 2; }
	$(PY) -m kltools book chapter $(CH) --params $(PARAMS)

suite: env
	$(PY) -m kltools suite build --profile $(PROFILE)

bench: env
	$(PY) benchmarks/bench_extract.py

gpu-check: env
	$(PY) benchmarks/gpu_check.py $(if $(DRY),--dry-run,)

lint: env
	$(VENV)/bin/ruff check kltools tests benchmarks scripts notebooks
	$(VENV)/bin/ruff format --check kltools tests benchmarks scripts

format: env
	$(VENV)/bin/ruff check --fix kltools tests benchmarks scripts notebooks
	$(VENV)/bin/ruff format kltools tests benchmarks scripts

clean:
	rm -rf _build .pytest_cache .ruff_cache .hypothesis

distclean: clean
	rm -rf $(VENV) data suite build
