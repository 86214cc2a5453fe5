# Raspberry Pi deploy (issue #6). The top-level Makefile includes this file; it also runs
# alone from the project root: make -f deploy/deploy.mk deploy PI=pi@raspberrypi.local
# The logic lives in deploy/ (python -m deploy); these targets only pass variables on.

PI ?=
# Folder on the Pi, relative to its home; deploy owns it (rsync --delete mirrors into it).
PI_DIR ?= fer-edge
# The model to deploy (empty = the runtime's default model).
MODEL ?=
# What the service reads: picamera, a camera index, a video file or a stream URL.
SOURCE ?= picamera
# Extra ssh options, e.g. SSH_OPTS="-p 2222 -i ~/.ssh/pi_key".
SSH_OPTS ?=
# YuNet .onnx; empty = the runtime's search (models/, then ../shared/models/).
YUNET ?=
# undeploy: PURGE=1 also deletes PI_DIR (venv, logs).
PURGE ?=
PYTHON ?= .venv/bin/python

# Single-quote a value for the shell, so SSH_OPTS with spaces arrives as one argument.
deploy_q = '$(subst ','\'',$(1))'
DEPLOY_TARGET = --pi=$(call deploy_q,$(PI)) --pi_dir=$(call deploy_q,$(PI_DIR)) \
	--ssh_opts=$(call deploy_q,$(SSH_OPTS))

.PHONY: deploy deploy-status logs undeploy deploy-check-wheels

deploy: ## copy the runtime + MODEL to PI:PI_DIR over SSH, install it, (re)start its service
	$(PYTHON) -m deploy deploy $(DEPLOY_TARGET) $(if $(MODEL),--model=$(call deploy_q,$(MODEL))) \
		--source=$(call deploy_q,$(SOURCE)) $(if $(YUNET),--yunet_model=$(call deploy_q,$(YUNET)))

deploy-status: ## the Pi service's state (systemctl) and its last events
	$(PYTHON) -m deploy status $(DEPLOY_TARGET)

logs: ## follow the Pi's events file (Ctrl-C to stop)
	$(PYTHON) -m deploy logs $(DEPLOY_TARGET)

undeploy: ## stop, disable and remove the Pi service; keeps PI_DIR unless PURGE=1
	$(PYTHON) -m deploy undeploy $(DEPLOY_TARGET) $(if $(PURGE),--purge)

deploy-check-wheels: ## check that the edge requirements have aarch64 wheels for Pi OS (Py 3.11, 3.13)
	$(PYTHON) -m deploy check-wheels
