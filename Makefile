# Two commands: `make run` (demo on http://127.0.0.1:8080) and `make test` (the whole suite).
# Both set up what they need: Debian packages (redis-server, ...), a venv, the Python packages.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock deploy/debian-packages.txt | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck unit audit lock bench screenshots setup clean chaos

$(STAMP): pyproject.toml requirements.lock deploy/debian-packages.txt deploy/install-system-packages.sh
	bash deploy/install-system-packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

run: $(STAMP)
	$(PY) -m hub run --config config/demo.toml --demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest -n 2 -q

test: lint typecheck audit unit

# Known vulnerabilities in the pinned packages (pip-audit against requirements.lock).
audit: $(STAMP)
	bash .ci/audit

# Re-pin every package (with hashes) after changing pyproject.toml's dependencies; the
# runtime subset (what deploy/Dockerfile installs) takes the same versions.
lock: $(STAMP)
	$(VENV)/bin/pip-compile --quiet --extra dev --generate-hashes --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links -c requirements.lock \
		-o deploy/requirements-runtime.lock pyproject.toml

bench: $(STAMP)
	bench/run

# Fault injection at scale (docs/reliability.md): 5,000 messages, 30 s Redis outages,
# kill -9 and SIGTERM of each role; then the parsers and the API fuzzed much longer.
# The quick variants of all three run in `make test`.
chaos: $(STAMP)
	HUB_CHAOS=1 $(VENV)/bin/pytest -q -s tests/faults -m chaos
	HUB_FUZZ_EXAMPLES=5000 HUB_FUZZ_PROFILE=hub-chaos $(VENV)/bin/pytest -q -n 2 tests/properties
	HUB_FUZZ_EXAMPLES=60 $(VENV)/bin/pytest -q tests/test_api_schemathesis.py

screenshots: $(STAMP)
	HUB_SCREENSHOTS=$(CURDIR)/docs $(VENV)/bin/pytest -q tests/browser tests/test_dashboard_page.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
