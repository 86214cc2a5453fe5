# fer-edge: train -> convert -> run at the edge. `make help` lists targets and variables.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# interpreter that creates the venv
PYTHON   ?= python3
# virtual environment folder
VENV     ?= .venv
# OpenCV of `make setup`: 1 = opencv-python (a window), 0 = headless; empty: 1 when a display is found
GUI      ?=
# pip extras installed by `make setup` beside the runtime's (`desktop` or `edge`, as GUI says)
EXTRAS   ?= train,bench,dev
# FER2013 zip/folder/csv
DATA     ?= $(firstword $(wildcard ../shared/datasets/fer2013/archive.zip) fer2013/archive.zip)
# where models and reports are written
MODELS   ?= models
# Keras source of the default model: `make convert` and `make finetune` input (the same path
# as DEFAULT_KERAS_SOURCE in train/config.py; tests/test_first_hour.py checks they agree)
KERAS    ?= $(MODELS)/fer_pair.h5
# the six-view FER2013 model (`make train-teacher`), one of fer_blend's two teachers
TEACHER  ?= $(MODELS)/fer_mnv2.h5
# model the runtime uses (empty = the runtime's default: $FER_EDGE_MODEL or the packaged int8)
MODEL    ?=
# what run, checks and capture read: camera index, picamera, file, folder or URL
SOURCE   ?= 0
# folder of <class>/*.jpg for `make finetune`
PERSONAL ?=
# video for `make bench`
BENCH_VIDEO ?= ../shared/media/obama_face2face-demo_1280x720_30fps.mp4
# extra flags for the fer-edge command
ARGS     ?=
# other checkouts whose runtime `make figures` times beside this one (MQTT/dashboard cost)
COMPARE_REPOS ?=
# YuNet .onnx that `make models` copies when it exists (else it downloads YUNET_URL)
YUNET_SRC ?= ../shared/models/face_detection_yunet_2026may.onnx
# where `make models` downloads YuNet from when YUNET_SRC is absent
YUNET_URL ?= https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx
# sha256 `make models` checks: the YuNet the project is tested with (set yours if it differs)
YUNET_SHA256 ?= ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0

BIN := $(VENV)/bin
FER := $(BIN)/fer-edge
comma := ,
empty :=
space := $(empty) $(empty)

# The runtime's OpenCV is chosen once per venv, as the `desktop` extra (opencv-python) or the
# `edge` extra (opencv-python-headless): the two wheels both install cv2 and break each other.
# In order: GUI=1/0 (kept in $(VENV)/.gui), `edge` or `desktop` in EXTRAS, $(VENV)/.gui, then
# the window's wheel when a display is found or the venv already has it (a desktop venv used
# over ssh keeps it: it runs headless as well, and a flip would reinstall OpenCV each time).
extras_list := $(subst $(comma),$(space),$(EXTRAS))
extras_cv := $(filter edge desktop,$(extras_list))
gui_extras := $(if $(filter desktop,$(extras_cv)),1)$(if $(filter edge,$(extras_cv)),0)
gui_saved := $(shell cat $(VENV)/.gui 2>/dev/null)
display := $(or $(DISPLAY:%=DISPLAY=%),$(WAYLAND_DISPLAY:%=WAYLAND_DISPLAY=%),$(if \
	$(filter Darwin,$(shell uname -s)),macOS))
ifneq ($(GUI),)
  gui := $(GUI)
  gui_why := GUI=$(GUI) was given
else ifneq ($(gui_extras),)
  gui := $(gui_extras)
  gui_why := EXTRAS names $(extras_cv)
else ifneq ($(gui_saved),)
  gui := $(gui_saved)
  gui_why := $(VENV)/.gui keeps the GUI=$(gui_saved) given before
else ifneq ($(display),)
  gui := 1
  gui_why := a display was found ($(display))
else ifneq ($(wildcard $(VENV)/.installed-desktop*),)
  gui := 1
  gui_why := $(VENV) has it (no display now, so fer-edge run says where to look)
else
  gui := 0
  gui_why := no display was found (DISPLAY and WAYLAND_DISPLAY are unset)
endif
gui_problem := $(or \
	$(if $(filter 10,$(gui_extras)),EXTRAS=$(EXTRAS) names edge and desktop: two OpenCV wheels; keep one),\
	$(if $(filter-out 0 1,$(gui)),$(gui_why)$(comma) but GUI is 1 (opencv-python; a window) or 0 (opencv-python-headless)),\
	$(if $(and $(GUI),$(gui_extras),$(filter-out $(GUI),$(gui_extras))),GUI=$(GUI) and EXTRAS=$(EXTRAS) ask for different OpenCV wheels; keep one))
ifneq ($(gui_problem),)
  $(error $(gui_problem))
endif
cv_extra := $(if $(filter 1,$(gui)),desktop,edge)
cv_wheel := $(if $(filter 1,$(gui)),opencv-python,opencv-python-headless)
cv_other := $(if $(filter 1,$(gui)),edge,desktop)
all_extras := $(subst $(space),$(comma),$(strip $(cv_extra) $(filter-out edge desktop,$(extras_list))))
gui_line := $(cv_wheel) ($(if $(filter 1,$(gui)),the overlay window,no window)), as $(gui_why); \
	GUI=$(if $(filter 1,$(gui)),0,1) switches
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(all_extras))

.PHONY: help setup setup-edge data train train-student train-blend ensemble train-teacher \
        train-seven finetune eval convert \
        convert-extra cards bench bench-accuracy figures readme run checks \
        capture test test-fast lint typecheck mutation models clean

# Every `VAR ?=` variable's value as this make sees it (defaults expanded, VAR=value applied),
# handed to awk as HELP_VAR='value' so that $(VAR) in the text below prints the value.
help: help_env = $(foreach v,$(shell awk '/^[A-Z_0-9]+ +\?=/{print $$1}' $(MAKEFILE_LIST)),\
	HELP_$(v)='$(subst ','\'',$($(v)))')
help: help_expand = out = ""; while (match(t, /\$$\([A-Z_0-9]+\)/)) { n = substr(t, RSTART + 2, \
	RLENGTH - 3); out = out substr(t, 1, RSTART - 1) (("HELP_" n) in ENVIRON ? ENVIRON["HELP_" n] \
	: substr(t, RSTART, RLENGTH)); t = substr(t, RSTART + RLENGTH) } t = out t
help: ## list targets and variables with their values (override as VAR=value)
	@echo "Targets:"
	@$(help_env) awk -F':.*## ' '/^[a-zA-Z_-]+:.*## /{t = $$2; $(help_expand); \
	    printf "  %-18s %s\n", $$1, t}' $(MAKEFILE_LIST)
	@echo "Variables (override as VAR=value):"
	@$(help_env) awk '/^# /{c = c (c == "" ? "" : " ") substr($$0, 3); next} \
	    /^[A-Z_0-9]+ +\?=/{v = ENVIRON["HELP_" $$1]; \
	    printf "  %-12s %s\n  %-12s   = %s\n", $$1, c, "", v == "" ? "(empty)" : v} {c = ""}' \
	    $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# cv2 providers in the venv, one name a line (pip's spelling varies: opencv_python, OpenCV-Python)
cv_wheels = $(BIN)/python -m pip list --format=freeze 2>/dev/null | cut -d= -f1 | tr _A-Z -a-z \
	| grep -xE 'opencv(-contrib)?-python(-headless)?' || true

# Both OpenCV wheels write cv2/, so removing one breaks the other: with a second one present,
# remove them all and let pip put the wanted one back whole.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(if $(filter setup,$(MAKECMDGOALS)),,@echo 'make: installing $(gui_line)')
	@have=$$($(cv_wheels)); if [ -n "$$have" ] && grep -qvx '$(cv_wheel)' <<< "$$have"; then \
	    echo "make: removing" $$have "(one OpenCV wheel per venv)"; \
	    $(BIN)/pip uninstall -y -q $$have; fi
	$(BIN)/pip install -q -e '.[$(all_extras)]'
	@have=$$($(cv_wheels)); [ "$$have" = '$(cv_wheel)' ] || { echo "make: $(VENV) has" \
	    $${have:-no OpenCV} "instead of $(cv_wheel) alone; another package pulls one in" >&2; exit 1; }
	@rm -f $(VENV)/.installed-$(cv_other)-* $(VENV)/.installed-$(cv_other)
	$(if $(GUI)$(gui_extras),@echo $(gui) > $(VENV)/.gui)
	@touch $@

setup: $(STAMP) ## create .venv and install everything; OpenCV with a window when a display is found (GUI=)
	$(if $(GUI)$(gui_extras),@echo $(gui) > $(VENV)/.gui)
	@echo 'make setup: $(VENV) has $(gui_line)'

setup-edge: ## runtime only (no TensorFlow), as on a Raspberry Pi; OpenCV as for setup
	$(MAKE) setup EXTRAS=

data: $(STAMP) ## decode FER2013 once into the cache and print its counts
	$(FER) data --data "$(DATA)"

# The shipped models were early-stopped on PublicTest (`--validation public`), the recipe of the
# first release; leave it out and a stratified share of the training faces validates instead.
SHIPPED_RECIPE := --validation public

train-teacher: $(STAMP) ## stage 1 on FER2013 labels, six views at test time -> $(TEACHER) (~80 min on 2 cores)
	$(FER) train --data "$(DATA)" --out $(MODELS) --name fer_mnv2 $(SHIPPED_RECIPE) $(ARGS)
	$(FER) train --data "$(DATA)" --out $(MODELS) --name fer_mnv2 $(SHIPPED_RECIPE) \
	    --init-from $(MODELS)/fer_mnv2.keras --epochs 8 --lr 5e-4 --warmup-epochs 0 --patience 4 $(ARGS)

train: $(STAMP) ## the default model: two nets trained on the crowd's votes, joined by `make ensemble` -> $(KERAS) (~2 h 20 min)
	$(MAKE) --no-print-directory train-student train-blend ensemble

train-student: $(STAMP) ## member 1: ImageNet -> FER+ votes, one view, then a temperature and per-class bias fitted on the training holdout -> models/fer_student.h5 (~45 min)
	$(FER) train --data "$(DATA)" --out $(MODELS) --name fer_student --labels ferplus-soft \
	    --robust-augment 0.4 --epochs 30 --warmup-epochs 1 --label-smoothing 0.05 --patience 8 \
	    --tta none $(ARGS)
	$(FER) calibrate --model $(MODELS)/fer_student.h5 --out $(MODELS)/fer_student

train-blend: $(STAMP) ## member 2: FER+ votes plus FER2013's label as 5 votes, half the targets from $(TEACHER) and fer_student -> models/fer_blend.h5 (~90 min)
	$(FER) train --data "$(DATA)" --out $(MODELS) --name fer_blend --labels ferplus-fer2013 \
	    --fer2013-votes 5 --teacher $(TEACHER),$(MODELS)/fer_student.h5 --teacher-weight 0.5 \
	    --robust-augment 0.4 --epochs 30 --warmup-epochs 1 --label-smoothing 0.05 --patience 8 \
	    --tta none $(ARGS)
	$(FER) calibrate --model $(MODELS)/fer_blend.h5 --out $(MODELS)/fer_blend

ensemble: $(STAMP) ## fer_student and fer_blend as one graph (mean logits, one interpreter run per face) -> models/fer_pair.h5
	$(FER) ensemble --members $(MODELS)/fer_student.h5,$(MODELS)/fer_blend.h5 --out $(MODELS)/fer_pair

train-seven: $(STAMP) ## FER2013's seven classes, six views, from the teacher -> models/fer7_mnv2.h5 (~45 min)
	$(FER) train --data "$(DATA)" --out $(MODELS) --name fer7_mnv2 $(SHIPPED_RECIPE) \
	    --classes 7 --labels fer2013 --robust-augment 0.3 --init-from $(TEACHER) --epochs 12 \
	    --lr 1e-3 --warmup-epochs 0.5 --patience 5 --tta multi $(ARGS)

finetune: $(STAMP) ## stage 2: fine-tune $(KERAS) on PERSONAL=dir (photos in <class>/ folders) -> $(MODELS)/personal
	@test -n "$(PERSONAL)" || { echo "make finetune: set PERSONAL=path/to/photos (a folder per class: happy/, sad/, ...)"; exit 2; }
	$(FER) finetune --base $(KERAS) --personal "$(PERSONAL)" --data "$(DATA)" --out $(MODELS)/personal $(ARGS)
	@echo "or with make: make convert KERAS=$(MODELS)/personal/fer_personal.keras MODELS=$(MODELS)/personal ARGS='--prefix fer_personal --variants int8' && make run MODEL=$(MODELS)/personal/fer_personal_int8.tflite"

eval: $(STAMP) ## accuracy of MODEL on FER2013 PrivateTest
	$(FER) eval $(MODEL) --data "$(DATA)" --split private $(ARGS)

convert: $(STAMP) ## Keras -> TFLite float32/float16/dynamic/int8 of $(KERAS), checked against Keras
	$(FER) convert --model $(KERAS) --out $(MODELS) --data "$(DATA)" $(ARGS)

convert-extra: $(STAMP) ## the int8 of the six-view teacher (--tta) and of the seven-class model
	$(FER) convert --model $(TEACHER) --out $(MODELS) --prefix fer_tta --variants int8 --data "$(DATA)"
	# seven classes: more near-ties, so int8 agrees on ~91% of faces; the 1-point accuracy gate holds
	$(FER) convert --model $(MODELS)/fer7_mnv2.h5 --out $(MODELS) --prefix fer7 --variants int8 \
	    --calibration 4000 --min-agreement 0.9 --data "$(DATA)"

cards: $(STAMP) ## every shipped int8 model: FER2013 + FER+ accuracy, robustness, size, latency
	$(FER) card $(MODELS)/fer_int8.tflite $(MODELS)/fer_tta_int8.tflite $(MODELS)/fer7_int8.tflite \
	    --data "$(DATA)" $(ARGS)

bench: $(STAMP) ## runtime FPS and per-stage latency on BENCH_VIDEO
	$(FER) bench --source "$(BENCH_VIDEO)" $(ARGS)

bench-accuracy: $(STAMP) ## every model variant on PublicTest and PrivateTest -> benchmarks/results
	$(FER) bench-accuracy --data "$(DATA)" --models $(MODELS) $(ARGS)

figures: $(STAMP) ## every figure of README.md and docs/, one go, one machine (~1 h, idle machine, root for the Pi part)
	$(MAKE) --no-print-directory cards bench-accuracy ARGS=
	$(MAKE) --no-print-directory bench ARGS="--rounds 3"
	$(BIN)/python -m fer_edge.benchmarks.sinks --source "$(BENCH_VIDEO)" --rounds 9 \
	    $(foreach r,$(COMPARE_REPOS),--compare-repo $(r))
	FER_EDGE_PI_FIGURES=1 FER_EDGE_PI_OS= $(BIN)/python -m pytest -q -s -p no:cacheprovider \
	    tests/test_pi_emulated.py -k make_deploy
	$(MAKE) --no-print-directory pi-faults
	$(MAKE) --no-print-directory readme

pi-faults: $(STAMP) ## the fault table of docs/raspberry-pi.md: full disk here, crash/reboot/power cut on the whole emulated Pi (root, ~12 min)
	FER_EDGE_PI_FIGURES=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/test_pi_system.py

readme: $(STAMP) ## render the figure blocks of README.md and docs/*.md from the newest benchmarks/results/ folder
	$(BIN)/python -m fer_edge.benchmarks.readme

run: $(STAMP) ## live detection on SOURCE (default camera 0) with MODEL
	$(FER) run $(if $(MODEL),--model $(MODEL)) --source "$(SOURCE)" $(ARGS)

checks: $(STAMP) ## print interpreter, model, detector and camera found
	$(FER) checks $(if $(MODEL),--model $(MODEL)) --source "$(SOURCE)" $(ARGS)

capture: $(STAMP) ## photograph LABEL=happy into PERSONAL=dir for stage 2
	$(FER) capture --label "$(LABEL)" --out "$(PERSONAL)" --source "$(SOURCE)" $(ARGS)

test: lint typecheck ## the test suite (what CI runs): ruff, mypy, then every test
	$(BIN)/python -m pytest -q $(ARGS)

test-fast: lint ## ruff, then the tests not marked slow (no training, no emulated Pi, no browser; < 3 min)
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .

# where `make typecheck` links the folders into the installed layout (fer_edge/edge, ...)
TYPECHECK_DIR ?= /tmp/fer-edge-typecheck
typecheck: $(STAMP) ## mypy over the runtime and evaluation as installed (fer_edge.edge, .evaluation)
	@rm -rf $(TYPECHECK_DIR) && mkdir -p $(TYPECHECK_DIR)/fer_edge
	@for f in fer_edge/*.py; do ln -s $(CURDIR)/$$f $(TYPECHECK_DIR)/fer_edge/; done
	@for d in edge evaluation train convert benchmarks models; do \
	    [ -e $$d ] && ln -s $(CURDIR)/$$d $(TYPECHECK_DIR)/fer_edge/$$d; done; true
	cd $(TYPECHECK_DIR) && $(abspath $(BIN))/mypy --config-file $(CURDIR)/pyproject.toml \
	    --python-executable $(abspath $(BIN))/python -p fer_edge.edge -p fer_edge.evaluation

# modules `make mutation` mutates (repository paths, comma-separated; empty = the default list
# in benchmarks/mutation.py: the runtime's stages, the conversion gate, FER+ rules, deploy)
MUTATE   ?=
mutation: $(STAMP) ## mutmut 3 over MUTATE with the fast tests -> benchmarks/results/mutation/ (hours)
	$(BIN)/python -m fer_edge.benchmarks.mutation run $(if $(MUTATE),--modules $(MUTATE)) $(ARGS)

models: ## put the YuNet face detector in models/ (from YUNET_SRC or the OpenCV Zoo), sha256-checked
	@mkdir -p $(MODELS)
	@f=$(MODELS)/face_detection_yunet.onnx; \
	  if [ ! -f $$f ] && [ -f "$(YUNET_SRC)" ]; then install -m 644 "$(YUNET_SRC)" $$f; fi; \
	  if [ ! -f $$f ]; then curl -fsSL -o $$f.part "$(YUNET_URL)" && mv $$f.part $$f; fi; \
	  echo "$(YUNET_SHA256)  $$f" | sha256sum --quiet -c - 2>/dev/null || { rm -f $$f; echo "make models: $$f had an unexpected sha256 and was removed; check YUNET_SRC / YUNET_URL, or set YUNET_SHA256 to your verified copy's hash"; exit 1; }; \
	  echo "$$f: sha256 OK"

clean: ## remove caches (not models, not the venv)
	rm -rf .pytest_cache .ruff_cache **/__pycache__

-include deploy/deploy.mk
