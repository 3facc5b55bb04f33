# floorctl developer tasks. GNU make + bash. `make test` is what CI (.ci/run) runs.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Debian installs mosquitto in /usr/sbin, which is not on a non-root user's PATH.
export PATH := $(PATH):/usr/sbin:/usr/local/sbin

.PHONY: venv mosquitto test lint demo clean distclean

## venv: .venv with floorctl installed editable plus the test extra (re-installs only when
## pyproject.toml is newer than .venv/.installed)
venv: $(STAMP)

$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: floorctl needs Python >= 3.11, but '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing)." >&2; \
	  echo "       Run 'make PYTHON=/path/to/python3.11 venv'." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VPY)
	@$(VPY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "error: $(VENV) uses $$($(VPY) --version 2>&1); floorctl needs >= 3.11. Run 'make distclean venv'." >&2; exit 1; }
	$(VPY) -m pip install -q -e '.[test]'
	@touch $@

## mosquitto: make sure the broker binary exists (the tests start their own brokers with it)
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 && command -v mosquitto_pub >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	else echo "error: mosquitto is not installed, and installing it needs root or sudo:" >&2; \
	     echo "       apt-get install mosquitto mosquitto-clients" >&2; exit 1; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "error: mosquitto is not installed and there is no apt-get; install mosquitto >= 2.0 by hand." >&2; exit 1; fi; \
	echo "installing mosquitto with apt-get ..."; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; \
	command -v mosquitto >/dev/null && command -v mosquitto_pub >/dev/null || { echo "error: apt-get ran but mosquitto or mosquitto_pub is still missing" >&2; exit 1; }

## test: the whole suite, slow tests included; e.g. make test PYTEST_ARGS="-k broker -x"
test: venv mosquitto
	$(VPY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## demo: `floorctl demo`: embedded broker, simulated devices, the daemon and the terminal UI (no
## mosquitto needed); e.g. make demo DEMO_ARGS=--headless (no terminal: readings and alarms printed)
DEMO_ARGS ?=
demo: venv
	$(VENV)/bin/floorctl demo $(DEMO_ARGS)

clean:
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .hypothesis build dist *.egg-info benchmarks/results/*.tmp

## distclean: clean, and remove the venv too
distclean: clean
	rm -rf $(VENV)
