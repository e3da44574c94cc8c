# Two commands: `make run` (demo on http://127.0.0.1:8080) and `make test` (the whole suite).
# Both set up what they need: Debian packages (redis-server, ...), a venv, the Python packages.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock deploy/debian-packages.txt | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck unit audit lock bench screenshots setup clean chaos \
	test-cluster cluster-smoke

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

test: lint typecheck audit unit cluster-smoke

# The end-to-end suite on a real 3-master Redis Cluster (redis-server processes on loopback,
# tests/redis_cluster.py; settings get redis.cluster = true). tests/faults and
# tests/test_cluster.py start their own servers (test_cluster.py its own cluster): `unit`.
test-cluster: $(STAMP)
	HUB_TEST_REDIS=cluster $(VENV)/bin/pytest -n 2 -q tests \
		--ignore=tests/faults --ignore=tests/test_cluster.py

# The main flows on the cluster, in `make test` (about a minute on 2 cores).
CLUSTER_SMOKE := tests/test_whatsapp_flow.py tests/test_replies.py \
	tests/email/test_email_flow.py tests/telegram/test_telegram_flow.py \
	tests/instagram/test_instagram_flow.py tests/portal/test_portal_flow.py \
	tests/calls/test_call_flow.py tests/test_dashboard.py tests/test_observer.py \
	tests/test_shard_balance.py tests/test_observer_role.py tests/test_archive.py \
	tests/test_console_core.py::test_live_events_and_resume_after_disconnect \
	tests/test_console_core.py::test_concurrent_claims_never_share_or_lose_a_ticket \
	tests/test_console_core.py::test_wrong_password_and_lockout \
	tests/test_search.py::test_filters_status_unit_and_channel \
	tests/test_reports.py::test_reports_page
cluster-smoke: $(STAMP)
	HUB_TEST_REDIS=cluster $(VENV)/bin/pytest -n 2 -q $(CLUSTER_SMOKE)

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
