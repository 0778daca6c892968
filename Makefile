# overnight: the nightly EEG response-time pipeline. `make` alone lists the targets.
#
# Settings for your machine (your dataset, the runner, the GPU) go in local.mk, which
# this file reads when it exists: see local.mk.example.

SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
-include local.mk

# ---- Settings (override on the command line, in local.mk or in the environment) ----
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SYNTH_DATA ?= data/synthetic
DATA ?= $(SYNTH_DATA)
# make data: the HBN releases to fetch (R1..R11) into DATA_DIR, one folder each; MINI=1 the
# 20-subject copies; SOURCE=challenge (100 Hz BDF) or openneuro (500 Hz originals); TASKS
# empty for the CCD task's files only, or all (or BIDS task names).
RELEASES ?=
MINI ?=
DATA_DIR ?= data
SOURCE ?= challenge
TASKS ?=
CONFIG ?= configs/demo.toml
SUBMISSION ?= submission
ZIP ?= $(SUBMISSION)
REPORTS ?= reports
# One folder per night. The night's date is the evening it started: a run before noon
# belongs to the night before, so a morning rerun resumes last night's folder.
RUNS ?= runs
ifeq ($(origin DATE),undefined)
DATE := $(shell date -d '12 hours ago' +%F 2>/dev/null || date +%F)
endif
WORK ?= $(RUNS)/$(DATE)
DEMO_WORK ?= work/demo
# make test-image's nights and images' scratch, kept for a look until its next run
TEST_IMAGE_WORK ?= work/test-image
LOCK ?= $(RUNS)/.lock
# How every job runs: RUNNER=local (this virtualenv), docker or podman (a container engine);
# GPU=amd, nvidia or none. ENGINE builds the image (make image): the runner's engine.
RUNNER ?= local
ENGINE ?= $(if $(filter podman,$(RUNNER)),podman,docker)
GPU ?= none
FLAVOUR := $(if $(filter amd,$(GPU)),rocm,$(if $(filter nvidia,$(GPU)),cuda,cpu))
IMAGE ?= overnight:$(FLAVOUR)
# make image: BASE_IMAGE replaces the Dockerfile's base, TORCH_INDEX the CPU torch's index
# (docker/Dockerfile.cpu names both defaults); IMAGE_BUILD_FLAGS go to the engine's build.
BASE_IMAGE ?=
TORCH_INDEX ?=
IMAGE_BUILD_FLAGS ?=
FRESH ?=
NOTIFY_CMD ?=
export NOTIFY_CMD
# The preflight links up to PREFLIGHT_MAX_SUBJECTS subjects of DATA and reads them in order
# until PREFLIGHT_SUBJECTS give windows (the split needs one to validate, one to tune, one to train).
PREFLIGHT_SUBJECTS ?= 4
PREFLIGHT_MAX_SUBJECTS ?= 20
# Processes on this node: the window stage's readers (empty: one per core) and, when set,
# each training job's torchrun processes (one per GPU; empty: one process, no torchrun).
# NNODES > 1 trains across nodes: start the same make on each with its NODE_RANK and a
# common RDZV_ENDPOINT (host:port of node 0, c10d rendezvous).
NPROC ?=
NNODES ?= 1
NODE_RANK ?= 0
RDZV_ENDPOINT ?=
# GPUs for one model each (GPUS=0,1,2,3 make -j4 models): every training job runs pinned to
# one that no other job holds. The night driver then makes the models with -j<count>.
GPUS ?=
TRAIN_SET ?=
WINDOWS_SET ?=
COMPARE_SET ?=
# Window caches built apart, one per release (space-separated .h5 files): make windows joins
# them (an HDF5 virtual dataset) instead of reading DATA.
WINDOW_PARTS ?=
EXTRA_RO ?=
SETUP_STAMP ?= $(VENV)/.installed
# The hyperparameter search (stage search, [search] in the config): its studies outlive a
# night, one folder each in SEARCH_DIR beside the night folders. SEARCH_STORAGE, a
# PostgreSQL URL (postgresql://user:password@host/db), shares one study among several hosts
# (docs/SCALING.md); it reaches the jobs through the environment only, never a command line
# or a log. SEARCH_MIN=<minutes> asks for a search now, of that length, also on a CPU
# (make demo SEARCH_MIN=5); SEARCH_SET adds settings (--set search.max_trials=3).
SEARCH_DIR ?= $(RUNS)/search
DEMO_SEARCH_DIR ?= work/search
SEARCH_STORAGE ?=
export SEARCH_STORAGE
SEARCH_MIN ?=
SEARCH_SET ?=

$(if $(filter $(RUNNER),local docker podman),,\
  $(error RUNNER=$(RUNNER): expected local, docker or podman))
$(if $(filter $(ENGINE),docker podman),,$(error ENGINE=$(ENGINE): expected docker or podman))
$(if $(filter $(GPU),amd nvidia none),,$(error GPU=$(GPU): expected amd, nvidia or none))
$(if $(and $(filter-out 1,$(NNODES)),$(if $(RDZV_ENDPOINT),,x)),\
  $(error NNODES=$(NNODES): set RDZV_ENDPOINT=host:port of node 0 for the rendezvous))
$(if $(and $(filter-out 1,$(NNODES)),$(if $(NPROC),,x)),\
  $(error NNODES=$(NNODES): set NPROC, the training processes of each node))
$(if $(filter $(MINI),1 0),,$(if $(MINI),$(error MINI=$(MINI): expected 1, 0 or nothing)))
$(if $(and $(GPUS),$(filter-out 1,$(NPROC))),\
  $(error GPUS pins each training job to one GPU; NPROC=$(NPROC) would put every rank on it: \
  use GPUS for many models or NPROC for one model on several GPUs, not both))

# The models: the registry (one file per model in lib/overnight/models/, and [night]
# extra_models) says which exist, what each reads and how it is fitted; its catalog reads
# them from the source, with the standard library alone (no virtualenv needed).
comma := ,
MODEL_CATALOG := $(shell PYTHONPATH=lib $(PYTHON) -m overnight.models.catalog \
                   --config $(CONFIG) --make)
catalog = $(subst $(comma), ,$(patsubst $(1)=%,%,$(filter $(1)=%,$(MODEL_CATALOG))))
MODEL_NAMES := $(call catalog,models)
NIGHT_MODELS := $(call catalog,night)
FEATURE_MODELS := $(call catalog,features)
SINGLE_PROCESS_MODELS := $(call catalog,single-process)
MODEL_MOUNTS := $(call catalog,mounts)

ifneq ($(filter docker podman,$(RUNNER)),)
# The chain's own tools (stage runner, night driver, status) need only the standard
# library: a container night needs no virtualenv on the host.
HOST_PY := PYTHONPATH=lib$(if $(PYTHONPATH),:$(PYTHONPATH)) $(PYTHON)
OUT_DIRS := $(WORK) $(REPORTS) $(SUBMISSION) $(SEARCH_DIR) .numba_cache
READY := $(OUT_DIRS)
CONTAINER = $(HOST_PY) jobs/container.py prefix --engine $(RUNNER) --gpu $(GPU) --image $(IMAGE) --repo $(CURDIR) \
            $(foreach p,$(DATA) $(EXTRA_RO) $(WINDOW_PARTS),--ro $(p)) --rw $(WORK) --rw $(REPORTS) \
            --rw $(SUBMISSION) --rw $(SEARCH_DIR) $(foreach p,$(MODEL_MOUNTS),--ro $(p)) \
            $(if $(filter-out 1,$(NNODES)),--host-network) \
            $(if $(filter-out $(MODELS)/baseline,$(ROLLBACK_MODEL)),--ro $(ROLLBACK_MODEL))
ifeq ($(origin JOB),undefined)
JOB := $(shell $(CONTAINER))
endif
JOB_SYNTH := $(shell $(CONTAINER) --rw $(SYNTH_DATA))
$(if $(JOB),,$(error RUNNER=$(RUNNER): cannot build the container command with $(PYTHON)))
else
HOST_PY := $(PY)
READY := $(SETUP_STAMP)
JOB ?= $(PY)
JOB_SYNTH = $(JOB)
endif

# The night folder's files (lib/overnight/layout.py names the same paths for the code).
WINDOWS := $(WORK)/windows.h5
SPLIT := $(WORK)/split.json
FEATURES := $(WORK)/features.h5
MODELS := $(WORK)/models
MODEL_RECORDS := $(foreach m,$(MODEL_NAMES),$(MODELS)/$(m)/model.json)
TRAIN_TARGETS := $(addprefix train-,$(MODEL_NAMES))
SEARCH_SUMMARY := $(WORK)/search/summary.json
COMPARISON := $(WORK)/comparison.json
# The model make rollback installs: the night's baseline, or a recorded champion's folder.
ROLLBACK_MODEL ?= $(MODELS)/baseline
CFG = --config $(CONFIG)
TORCHRUN = -m torch.distributed.run --nproc-per-node $(NPROC) \
           $(if $(filter 1,$(NNODES)),--standalone,--nnodes $(NNODES) --node-rank $(NODE_RANK) \
           --rdzv-backend c10d --rdzv-endpoint $(RDZV_ENDPOINT) --rdzv-id overnight-$(DATE))
# A model fitted by gradients trains under torchrun when NPROC is set; trees in one process.
TRAIN = $(JOB) $(if $(and $(NPROC),$(filter-out $(SINGLE_PROCESS_MODELS),$*)),$(TORCHRUN)) \
        jobs/train.py $(CFG) $(TRAIN_SET)
# The night driver sets NIGHT_DEADLINE (epoch seconds): no stage runs past the night's limit.
STAGE = $(HOST_PY) jobs/run_stage.py $(CFG) $(if $(NIGHT_DEADLINE),--deadline $(NIGHT_DEADLINE)) \
        $(if $(GPUS),--gpus $(GPUS)) --work $(WORK)
# The search job: SEARCH_MIN sets its budget and allows it on a CPU.
SEARCH = $(JOB) jobs/search.py $(CFG) $(TRAIN_SET) $(SEARCH_SET) \
         $(if $(SEARCH_MIN),--set search.budget_min=$(SEARCH_MIN) --set search.on_cpu=true) \
         --windows $(WINDOWS) --split $(SPLIT) --features $(FEATURES) --studies $(SEARCH_DIR) \
         --out $(MODELS)/search --records $(WORK)/search $(if $(GPUS),--gpus $(GPUS)) \
         $(if $(NIGHT_DEADLINE),--deadline $(NIGHT_DEADLINE))
DRY_RUN := $(if $(findstring n,$(firstword -$(MAKEFLAGS))),--dry-run)
# The night driver: it holds the lock and makes each stage's target in turn.
NIGHT = $(HOST_PY) jobs/night.py --work $(WORK) --date $(DATE) --lock $(LOCK) $(CFG) \
        --reports $(REPORTS) --data $(DATA) --submission $(SUBMISSION) \
        --preflight-subjects $(PREFLIGHT_SUBJECTS) \
        --preflight-max-subjects $(PREFLIGHT_MAX_SUBJECTS) --make "$(MAKE) --no-print-directory" \
        --runner $(RUNNER) --gpu $(GPU) --image $(IMAGE) $(if $(FRESH),--fresh) \
        $(if $(GPUS),--gpus $(GPUS))

.PHONY: help setup scorer-env score data demo synth overnight night-command ready preflight device check-models \
        windows features models $(TRAIN_TARGETS) compare report rollback \
        verify image debian-base test-image status logs install-cron test test-all test-eegnex test-eegdash lint clean \
        distclean bench bench-windows bench-models bench-night bench-compare bench-batch-one bench-data setup-eegnex

help: ## list the targets
	@echo "overnight: nightly EEG response-time pipeline"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^## ----/ {sub(/^## /, ""); printf "\n%s\n", $$0} \
	     /^([a-zA-Z_-]+|\$$\(TRAIN_TARGETS\)):.*## / {sub(/\$$\(TRAIN_TARGETS\)/, "train-<model>", $$1); \
	     printf "  make %-16s %s\n", $$1, $$2}' \
	     $(MAKEFILE_LIST)
	@echo
	@echo "Models: $(MODEL_NAMES) (tonight: $(NIGHT_MODELS))"
	@echo "Now: DATA=$(DATA) WORK=$(WORK) CONFIG=$(CONFIG) RUNNER=$(RUNNER) GPU=$(GPU)"

## ---- Start here ----
demo: setup ## set up, make the synthetic dataset and run the whole chain in work/demo (CPU)
	+$(MAKE) --no-print-directory synth overnight WORK=$(DEMO_WORK) \
	    SEARCH_DIR=$(DEMO_SEARCH_DIR)

test: setup ## lint and run the default test suite (no GPU, no slow tests, no eegdash rerun)
	$(PY) -m ruff check lib jobs tests bench examples
	$(PY) -m pytest -q --durations=10 -m "not slow and not gpu and not eegdash"

data: | $(SETUP_STAMP) ## fetch RELEASES="R1 R5" [MINI=1] [SOURCE=openneuro] [TASKS=all] into DATA_DIR (data)
	$(if $(RELEASES),,$(error make data: set RELEASES, e.g. RELEASES="R1 R5" (R1..R11)))
	$(PY) jobs/download.py $(CFG) --releases $(RELEASES) --source $(SOURCE) \
	    $(if $(filter 1,$(MINI)),--mini) $(if $(TASKS),--tasks $(TASKS)) --out $(DATA_DIR)

## ---- Every night ----
overnight: | $(READY) ## tonight's chain in WORK (runs/<date>): preflight, stages, report; resumes
	+$(NIGHT) $(DRY_RUN)

preflight: | $(READY) ## every job on a slice of DATA, one epoch, in <WORK>/preflight (~1 min)
	+$(NIGHT) --preflight-only $(DRY_RUN)

night-command: ## print the night driver's command (cron-night.sh runs it, for its exit code)
	@echo '$(NIGHT)'

ready: | $(READY) ## create what a night needs before it starts (the virtualenv or the folders)

image: ## build the image for GPU=amd|nvidia|none with ENGINE=docker|podman [BASE_IMAGE=...] [TORCH_INDEX=...]
	$(ENGINE) build --file docker/Dockerfile.$(FLAVOUR) --tag $(IMAGE) \
	    $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	    $(if $(TORCH_INDEX),--build-arg TORCH_INDEX=$(TORCH_INDEX)) $(IMAGE_BUILD_FLAGS) .

debian-base: ## base images with no registry: Debian by mmdebstrap, then Python (BASE_IMAGE for GPU=none)
	sh docker/debian-base.sh $(ENGINE)

status: ## the night now: running stage, progress, elapsed time, the search's study, GPU use, last log lines
	@$(HOST_PY) jobs/status.py --work $(WORK) --lock $(LOCK)

search-defaults: | $(READY) ## print the latest study's best values as a TOML diff against CONFIG (changes nothing)
	@$(JOB) jobs/search_defaults.py $(CFG) --studies $(SEARCH_DIR) \
	    $(if $(wildcard $(WINDOWS)),--windows $(WINDOWS) --split $(SPLIT) --models $(MODELS))

logs: ## follow the night's log as it is written (Ctrl-C stops following, not the night)
	@$(HOST_PY) jobs/status.py --work $(WORK) --follow

install-cron: ## print the crontab lines for this checkout; INSTALL=1 adds them to your crontab
	@scripts/install-cron.sh $(if $(INSTALL),--install)

## ---- The chain (make overnight runs these in order) ----
synth: $(SYNTH_DATA)/dataset_description.json ## write the synthetic HBN dataset to data/synthetic

device: | $(READY) ## the versions and device the jobs see; fails when GPU is set and none is
	$(STAGE) device -- $(JOB) jobs/check_device.py $(CFG) --gpu $(GPU)

check-models: | $(READY) ## the night's models: each imports, builds, keeps its guards and embeds
	$(STAGE) check-models -- $(JOB) jobs/check_models.py $(CFG)

windows: $(WINDOWS) ## BIDS recordings -> HDF5 windows with RT targets, and the split

features: $(FEATURES) ## Numba features per window -> HDF5

$(TRAIN_TARGETS): train-%: $(MODELS)/%/model.json ## train one registered model (listed below), e.g. make train-hybrid

models: $(addprefix train-,$(NIGHT_MODELS)) ## the night's models ([night] models; make -k models: one failed model spares the others)

search: $(SEARCH_SUMMARY) ## Optuna search of the [train] settings in the hours left; its best is model search

search-workers: | $(READY) ## this host's workers (one per GPU of GPUS) join the night's study (SEARCH_STORAGE; docs/SCALING.md)
	$(SEARCH) --workers-only

compare: $(COMPARISON) ## score the models that trained and the champion; promote

report: | $(READY) ## render reports/<date>.html and latest.html from what WORK holds
	$(STAGE) report -- $(JOB) jobs/report.py $(CFG) --work $(WORK) --windows $(WINDOWS) \
	    --reports $(REPORTS) --date $(DATE) --submission $(SUBMISSION)

rollback: | $(READY) ## make the baseline of WORK (or ROLLBACK_MODEL) champion again and regenerate the submission
	$(STAGE) rollback -- $(JOB) jobs/rollback.py $(CFG) --model $(ROLLBACK_MODEL) \
	    --windows $(WINDOWS) --split $(SPLIT) --submission $(SUBMISSION)

verify: | $(READY) ## check the submission: its files against champion.json, then the promotion check
	$(STAGE) verify -- $(JOB) jobs/verify.py $(CFG) --submission $(SUBMISSION) \
	    $(if $(wildcard $(WINDOWS)),--windows $(WINDOWS) --split $(SPLIT))

score: | $(READY) ## score ZIP (default: the submission's zip) on the release DATA as the challenge's scorer does, one window at a time, in the scorer's environment (make scorer-env)
	$(PY) jobs/score.py $(CFG) --zip $(ZIP) --data $(DATA)

$(SYNTH_DATA)/dataset_description.json: | $(READY) $(if $(filter docker podman,$(RUNNER)),$(SYNTH_DATA))
	$(STAGE) synth -- $(JOB_SYNTH) jobs/synth.py $(CFG) --out $(SYNTH_DATA)

ifeq ($(WINDOW_PARTS),)
$(WINDOWS) $(SPLIT) &: $(foreach d,$(DATA),$(wildcard $(d)/dataset_description.json)) | $(READY)
	$(STAGE) windows -- $(JOB) jobs/windows.py $(CFG) $(WINDOWS_SET) \
	    $(if $(NPROC),--set windows.workers=$(NPROC)) --bids-root $(DATA) --out $(WINDOWS) \
	    --split-out $(SPLIT)
else
# Caches built apart (one per release, e.g. by a Slurm array running make windows with its
# own DATA and WORK): joined by an HDF5 virtual dataset, the windows not copied.
$(WINDOWS) $(SPLIT) &: $(WINDOW_PARTS) | $(READY)
	$(STAGE) windows -- $(JOB) jobs/join_windows.py $(CFG) --parts $(WINDOW_PARTS) \
	    --out $(WINDOWS) --split-out $(SPLIT)
endif

$(FEATURES): $(WINDOWS)
	$(STAGE) features -- $(JOB) jobs/features.py $(CFG) --windows $(WINDOWS) --out $@

# One rule for every registered model; the ones that read features wait for them.
$(MODEL_RECORDS): $(MODELS)/%/model.json: $(WINDOWS) $(SPLIT)
	$(STAGE) train-$* -- $(TRAIN) --model $* --windows $(WINDOWS) --split $(SPLIT) \
	    $(if $(filter $*,$(FEATURE_MODELS)),--features $(FEATURES)) --out $(@D)

$(foreach m,$(FEATURE_MODELS),$(MODELS)/$(m)/model.json): $(FEATURES)

.PHONY: search search-workers search-defaults FORCE
# SEARCH_MIN asks for a search now: the stage runs even when tonight's search is done.
$(SEARCH_SUMMARY): $(WINDOWS) $(SPLIT) $(FEATURES) $(if $(SEARCH_MIN),FORCE) | $(READY)
	$(STAGE) search -- $(SEARCH)

FORCE:

# Whatever trained: a failed model leaves the others to compare, none leaves the champion.
$(COMPARISON): $(wildcard $(MODELS)/*/model.json) | $(READY)
	$(STAGE) compare -- $(JOB) jobs/compare.py $(CFG) $(COMPARE_SET) --models $(MODELS) \
	    --windows $(WINDOWS) --split $(SPLIT) --submission $(SUBMISSION) --out $@ \
	    $(if $(wildcard $(FEATURES)),--features $(FEATURES))

ifneq ($(filter docker podman,$(RUNNER)),)
# the engines mount only folders that exist: create the outputs first, as the calling user.
$(sort $(OUT_DIRS) $(SYNTH_DATA)):
	mkdir -p $@
endif

## ---- Benchmarks ----
BENCH_WORK ?= work/bench
N ?= 41071

bench-data: | $(READY) ## write the real-size benchmark cache: N (41,071) simulated windows
	$(PY) bench/make_data.py --n $(N) --out $(BENCH_WORK)/windows.h5 \
	    --split-out $(BENCH_WORK)/split.json

bench: | $(READY) ## benchmark windows, features, training and the chain; update docs/BENCHMARKS.md
	$(PY) bench/run.py --work $(BENCH_WORK) $(if $(filter command line,$(origin N)),--n $(N))

bench-windows: | $(READY) ## benchmark the window stage alone: 1 worker vs every core, 500 Hz .set
	$(PY) bench/run.py --work $(BENCH_WORK) --only-windows

bench-models: | $(READY) ## every model variant x 3 seeds on demo, hard, many, other, one on each of 4 family draws
	$(PY) bench/models.py --work $(BENCH_WORK)/models

bench-batch-one: | $(READY) ## each of WORK's trained models as the scorer calls it, one window at a time, in the scorer's and the project's environment
	$(PY) bench/batch_one.py --models $(WORK)/models

bench-compare: | $(READY) ## stage compare at N (41,071) windows: every model, the blend, the importance
	$(PY) bench/compare.py --work $(BENCH_WORK)/compare --n $(N)

bench-night: | $(READY) ## a whole night (make overnight, NPROC=cores) on a tree of N (41,071) windows
	$(PY) bench/night.py --work $(BENCH_WORK)/night --windows $(N)

## ---- Set-up and upkeep ----
setup: $(SETUP_STAMP) ## create the virtualenv with pinned dependencies (.venv)

$(SETUP_STAMP): requirements.txt requirements-runtime.txt requirements-eegdash.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-eegdash.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

scorer-env: setup ## the scorer's environment, once: Python 3.10, torch 2.2.2, braindecode 1.2.0 (requirements-scorer.txt; ~5 GB with PyPI's CUDA torch) for the promotion check and make score
	$(PY) -m overnight.champion.scorer_env

setup-eegnex: setup ## optional: braindecode's EEGNeX, with torch/torchaudio 2.11 in place of torch 2.13 (~3 GB)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-eegnex.txt

test-eegnex: setup ## the EEGNeX tests (after make setup-eegnex, or in a container image)
	$(PY) -m pytest -q -m eegnex

test-eegdash: setup ## rerun eegdash's own trial logic on R1's real events (tests/data/hbn-r1)
	$(PY) -m pytest -q -m eegdash

test-all: setup ## every test but make test-image's, slow ones included (GPU tests run when a GPU is visible)
	$(PY) -m pytest -q -m "not gpu and not image"

test-image: setup ## build the CPU image with Podman and run the demo's night in it (~15 min, 7 GB; root installs Podman)
	sh tests/image/install-podman.sh
	mkdir -p $(dir $(TEST_IMAGE_WORK))
	$(PY) -m pytest -q -s -m image --basetemp $(TEST_IMAGE_WORK) tests/image

lint: setup ## ruff on the code
	$(PY) -m ruff check lib jobs tests bench examples

clean: ## delete the demo work folder, its study and rendered reports (keeps nights, data, submission, venv)
	rm -rf $(DEMO_WORK) $(DEMO_SEARCH_DIR) $(REPORTS)/*.html

distclean: clean ## also delete the synthetic data, the submission and the virtualenv
	rm -rf $(SYNTH_DATA) $(SUBMISSION) $(VENV) work
