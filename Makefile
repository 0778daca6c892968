# overnight: the nightly EEG response-time pipeline. `make` alone lists the targets.
#
# Settings for your machine (your dataset, your work folder) go in local.mk, which
# this file reads when it exists: see local.mk.example.

SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
-include local.mk

# ---- Settings (override on the command line or in local.mk) ----
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SYNTH_DATA ?= data/synthetic
DATA ?= $(SYNTH_DATA)
WORK ?= work/demo
CONFIG ?= configs/demo.toml
SUBMISSION ?= submission
REPORTS ?= reports
DATE ?= $(shell date +%F)
# How a job runs: a local Python here; a container runner replaces only this.
JOB ?= $(PY)

SETUP_STAMP := $(VENV)/.installed
WINDOWS := $(WORK)/windows.h5
SPLIT := $(WORK)/split.json
FEATURES := $(WORK)/features.h5
MODELS := $(WORK)/models
BASELINE := $(MODELS)/baseline/model.json
HYBRID := $(MODELS)/hybrid/model.json
COMPARISON := $(WORK)/comparison.json
STAGE = $(PY) jobs/run_stage.py --work $(WORK)
CFG = --config $(CONFIG)

.PHONY: help setup demo synth overnight windows features train-baseline train-hybrid \
        compare report rollback test test-all lint clean distclean

help: ## list the targets
	@echo "overnight: nightly EEG response-time pipeline"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^## ----/ {sub(/^## /, ""); printf "\n%s\n", $$0} \
	     /^[a-zA-Z_-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Now: DATA=$(DATA) WORK=$(WORK) CONFIG=$(CONFIG) SUBMISSION=$(SUBMISSION)"

## ---- Start here ----
demo: setup synth overnight ## set up, make the synthetic dataset and run the whole chain (CPU)

test: setup ## lint and run the default test suite (no GPU, no slow tests)
	$(PY) -m ruff check lib jobs tests
	$(PY) -m pytest -q -m "not slow and not gpu"

## ---- The chain ----
overnight: report ## run every stage on DATA; a rerun resumes after the last finished one

synth: $(SYNTH_DATA)/dataset_description.json ## write the synthetic HBN dataset to data/synthetic

windows: $(WINDOWS) ## stage 1: BIDS recordings -> HDF5 windows with RT targets, and the split

features: $(FEATURES) ## stage 2: Numba features per window -> HDF5

train-baseline: $(BASELINE) ## stage 3: train the baseline CNN

train-hybrid: $(HYBRID) ## stage 4: train the hybrid CNN + features model

compare: $(COMPARISON) ## stage 5: score all models and the champion; promote through the gate

report: $(COMPARISON) ## stage 6: render reports/<date>.html and reports/latest.html
	$(STAGE) report -- $(JOB) jobs/report.py $(CFG) --work $(WORK) --windows $(WINDOWS) \
	    --reports $(REPORTS) --date $(DATE)

rollback: setup ## make the baseline champion again and regenerate the submission
	$(STAGE) rollback -- $(JOB) jobs/rollback.py $(CFG) --baseline $(MODELS)/baseline \
	    --windows $(WINDOWS) --split $(SPLIT) --submission $(SUBMISSION)

$(SYNTH_DATA)/dataset_description.json: | $(SETUP_STAMP)
	$(STAGE) synth -- $(JOB) jobs/synth.py $(CFG) --out $(SYNTH_DATA)

$(WINDOWS) $(SPLIT) &: $(wildcard $(DATA)/dataset_description.json) | $(SETUP_STAMP)
	$(STAGE) windows -- $(JOB) jobs/windows.py $(CFG) --bids-root $(DATA) --out $(WINDOWS) \
	    --split-out $(SPLIT)

$(FEATURES): $(WINDOWS)
	$(STAGE) features -- $(JOB) jobs/features.py $(CFG) --windows $(WINDOWS) --out $@

$(BASELINE): $(WINDOWS) $(SPLIT)
	$(STAGE) train-baseline -- $(JOB) jobs/train.py $(CFG) --model baseline \
	    --windows $(WINDOWS) --split $(SPLIT) --out $(@D)

$(HYBRID): $(WINDOWS) $(SPLIT) $(FEATURES)
	$(STAGE) train-hybrid -- $(JOB) jobs/train.py $(CFG) --model hybrid \
	    --windows $(WINDOWS) --split $(SPLIT) --features $(FEATURES) --out $(@D)

$(COMPARISON): $(BASELINE) $(HYBRID)
	$(STAGE) compare -- $(JOB) jobs/compare.py $(CFG) --models $(MODELS) \
	    --windows $(WINDOWS) --split $(SPLIT) --submission $(SUBMISSION) --out $@ \
	    --truth $(DATA)/derivatives/synth/truth.tsv

## ---- Set-up and upkeep ----
setup: $(SETUP_STAMP) ## create the virtualenv with pinned dependencies (.venv)

$(SETUP_STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

test-all: setup ## every test, slow ones included (GPU tests run when a GPU is visible)
	$(PY) -m pytest -q -m "not gpu"

lint: setup ## ruff on the code
	$(PY) -m ruff check lib jobs tests

clean: ## delete the demo work folder and rendered reports (keeps data, submission, venv)
	rm -rf work/demo $(REPORTS)/*.html

distclean: clean ## also delete the synthetic data, the submission and the virtualenv
	rm -rf $(SYNTH_DATA) $(SUBMISSION) $(VENV) work
