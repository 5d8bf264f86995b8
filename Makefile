# Every command creates .venv when it is missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck deploy-tools run bench soak fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy gateway tests

# Debian's nginx and systemd (systemd-analyze, systemd-sysusers) for tests/test_deploy.py,
# installed when missing and running as root, as CI does; without root those tests say
# they are skipped and why. policy-rc.d keeps the package from starting an nginx on :80.
deploy-tools:
	@missing=""; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing=" nginx"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing with apt-get"; \
		policy=/usr/sbin/policy-rc.d; made=""; \
		if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod +x $$policy && made=1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null; status=$$?; \
		[ -z "$$made" ] || rm -f $$policy; \
		exit $$status; \
	fi

test: lint typecheck deploy-tools
	$(BIN)/pytest

run: $(STAMP)
	$(BIN)/python -m gateway.dev.demo

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

# 60 s at 256 connections against local, redirect and proxy paths; RSS and fds checked.
soak: $(STAMP)
	$(BIN)/python -m bench soak --duration 60

# The long fuzzing profile: 100,000 examples per property (make test runs 300).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/serving/test_fuzz.py -p no:cacheprovider

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var
