# Raspberry Pi deploy (issues #6, #10). The top-level Makefile includes this file; it also runs
# alone from the project root: make -f deploy/deploy.mk deploy PI=pi@raspberrypi.local
# The logic lives in deploy/ (python -m deploy); these targets only pass variables on.
#
# Names: deploy's own settings start with PI_, DEPLOY_, MQTT or DASHBOARD, so the top-level
# Makefile's defaults for a local run (SOURCE=0, PYTHON=python3) never reach the Pi. Two
# top-level names apply here on purpose: MODEL (the model file is the same; empty = the
# runtime's default, which deploy asks the runtime for), and SOURCE when you give it yourself
# (command line or environment): make deploy PI=... SOURCE=clip.mp4.

# user@host of the Pi, or a Host from ~/.ssh/config; several in quotes: PI="pi@a pi@b" (in parallel)
PI ?=
# folder on the Pi, relative to its home; deploy owns it (rsync --delete mirrors into it)
PI_DIR ?= fer-edge
# what the Pi's service reads: picamera, a camera index, a video file, a URL (SOURCE=x sets it too)
PI_SOURCE ?= picamera
# extra ssh options, e.g. SSH_OPTS="-p 2222 -i ~/.ssh/pi_key"
SSH_OPTS ?=
# YuNet .onnx to deploy; empty = the runtime's search (models/, then ../shared/models/)
YUNET ?=
# undeploy: PURGE=1 also deletes PI_DIR (venv, logs)
PURGE ?=
# broker the Pi's service publishes to: mqtt://[user@]host[:port] or mqtts://...; empty = none
MQTT ?=
# local file with the MQTT password; it goes to the Pi readable only by the service user
MQTT_PASSWORD_FILE ?=
# port of the Pi service's dashboard (on the Pi's 127.0.0.1: ssh -L PORT:127.0.0.1:PORT); empty = none
DASHBOARD ?=
# seconds of events a power cut may take (the service's --events-sync); 0 = none, at a journal
# commit per frame with a face (SD-card wear); off = the kernel's ~5 s; empty = the runtime's 1 s
PI_EVENTS_SYNC ?=
# Run alone (make -f deploy/deploy.mk), the top-level Makefile has not set VENV.
ifndef VENV
VENV := .venv
endif
# local Python that runs deploy/ (the project's venv: staging reads the detector with OpenCV)
DEPLOY_PYTHON ?= $(VENV)/bin/python
# emulated Pi OS for pi-emulator and test-pi: bookworm (Python 3.11) or trixie (Python 3.13)
PI_OS ?= bookworm

# A value given by the user (command line or environment), as opposed to a makefile default.
deploy_given = $(filter command line environment environment override override,$(origin $(1)))
deploy_source = $(if $(call deploy_given,PI_SOURCE),$(PI_SOURCE),$(if \
	$(call deploy_given,SOURCE),$(SOURCE),$(PI_SOURCE)))

# Quote a value for the shell only when it needs it, so `make -n deploy` stays readable
# (--source=picamera) and SSH_OPTS with spaces still arrives as one argument.
deploy_space := $(subst ,, )
deploy_tab := $(subst ,,	)
deploy_meta := ' " ` $$ \ ; & | < > ( ) * ? [ ] { } ~ ! \#
deploy_unsafe = $(or $(findstring $(deploy_space),$(1)),$(findstring $(deploy_tab),$(1)),$(strip \
	$(foreach c,$(deploy_meta),$(findstring $(c),$(1)))))
deploy_q = $(if $(and $(1),$(if $(call deploy_unsafe,$(1)),,x)),$(1),'$(subst ','\'',$(1))')
DEPLOY_TARGET = --pi=$(call deploy_q,$(PI)) --pi_dir=$(call deploy_q,$(PI_DIR)) \
	--ssh_opts=$(call deploy_q,$(SSH_OPTS))
deploy_run = $(call deploy_q,$(DEPLOY_PYTHON)) -m deploy

.PHONY: deploy deploy-status logs rollback undeploy deploy-check-wheels deploy-python pi-emulator test-pi

deploy-python:
	@command -v $(call deploy_q,$(DEPLOY_PYTHON)) >/dev/null || { echo "make: $(DEPLOY_PYTHON) \
	not found; run make setup-edge first, or pass DEPLOY_PYTHON=path/to/python" >&2; exit 2; }

deploy: deploy-python ## copy the runtime + MODEL to PI:PI_DIR over SSH, install it, (re)start its service
	$(deploy_run) deploy $(DEPLOY_TARGET)$(if $(MODEL), --model=$(call deploy_q,$(MODEL))) \
		--source=$(call deploy_q,$(deploy_source))$(if $(YUNET), \
		--yunet_model=$(call deploy_q,$(YUNET)))$(if $(MQTT), --mqtt=$(call deploy_q,$(MQTT)))$(if \
		$(MQTT_PASSWORD_FILE), --mqtt-password-file=$(call deploy_q,$(MQTT_PASSWORD_FILE)))$(if \
		$(DASHBOARD), --dashboard=$(call deploy_q,$(DASHBOARD)))$(if \
		$(PI_EVENTS_SYNC), --events_sync=$(call deploy_q,$(PI_EVENTS_SYNC)))

deploy-status: deploy-python ## the Pi service's state (systemctl) and its last events
	$(deploy_run) status $(DEPLOY_TARGET)

logs: deploy-python ## follow the Pi's events file (Ctrl-C to stop)
	$(deploy_run) logs $(DEPLOY_TARGET)

rollback: deploy-python ## switch the Pi back to its previous release and restart the service
	$(deploy_run) rollback $(DEPLOY_TARGET)

undeploy: deploy-python ## stop, disable and remove the Pi service; keeps PI_DIR unless PURGE=1
	$(deploy_run) undeploy $(DEPLOY_TARGET) $(if $(PURGE),--purge)

deploy-check-wheels: deploy-python ## check that the edge requirements have aarch64 wheels for Pi OS (Py 3.11, 3.13)
	$(deploy_run) check-wheels

pi-emulator: deploy-python ## an emulated arm64 Pi (PI_OS) with sshd on 127.0.0.1 to deploy to; Ctrl-C stops it (root)
	$(call deploy_q,$(DEPLOY_PYTHON)) -m deploy.pi run --os=$(call deploy_q,$(PI_OS))

test-pi: deploy-python ## the emulated-Pi checks: deploy to arm64 Bookworm and Trixie, compare with x86 (root)
	$(call deploy_q,$(DEPLOY_PYTHON)) -m pytest -q -s tests/test_pi_emulated.py tests/test_picamera.py $(ARGS)
