# Coreboard: `make run` starts everything, `make test` runs the whole suite (lint, types, the
# pages' JS unit tests, pytest), `make test-fast` its layers that need no browser and start no
# process.
SHELL := /bin/bash
.DEFAULT_GOAL := run

UV_VERSION := 0.13.8
UV := var/bootstrap/bin/uv
PY := .venv/bin/python
JS_SOURCES := static tests/js eslint.config.mjs
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
# Trust the system CA store (it may hold a proxy's CA) rather than only uv's bundled roots.
export UV_SYSTEM_CERTS := 1

# Debian packages the project needs, installed with apt only where missing.
RUN_PACKAGES := redis-server postgresql acl npm
TEST_PACKAGES := $(RUN_PACKAGES) chromium

.PHONY: run worker test test-fast test-js bench lint format typecheck screenshots system-packages test-system-packages

run: system-packages .venv/.synced node_modules/.installed
	$(PY) -m launcher.run

# A worker only, for more machines: point DATABASE_URL and REDIS_URL at the shared servers
# (`COREBOARD_LISTEN=<address> make run` prints the whole line). Options, given on the
# command line only (the environment's NODE etc. are not taken): NODE=name, QUEUES=q1,q2,
# CONCURRENCY=n, LABELS=a,b; COREBOARD_WORKER_NODE/_QUEUES/_CONCURRENCY/_LABELS otherwise.
given = $(if $(filter command line,$(origin $(1))),$(2) '$($(1))')
worker: .venv/.synced
	$(PY) -m launcher.worker $(call given,NODE,--node) $(call given,QUEUES,--queues) \
		$(call given,CONCURRENCY,--concurrency) $(call given,LABELS,--labels)

test: test-system-packages .venv/.synced-dev node_modules/.installed-dev lint test-js
	$(PY) -m mypy .
	$(PY) -m pytest

# Unit tests of the pages' pure modules (static/jobs/*_state.mjs, static/lib/) in Node's
# own test runner: no browser, no DOM, no npm package.
test-js:
	node --test tests/js/*.test.mjs

# The services, API, pages and consumers layers, one folder each: no browser, no worker or
# daphne process (see docs/testing.md); about a minute on 2 cores.
test-fast: system-packages .venv/.synced-dev
	$(PY) -m pytest tests/services tests/api tests/pages tests/consumers

bench: test-system-packages .venv/.synced-dev node_modules/.installed-dev
	$(PY) -m tests.benchmarks.speedup
	$(PY) -m tests.benchmarks.history
	$(PY) -m tests.benchmarks.frontend
	$(PY) -m tests.benchmarks.scaling
	$(PY) -m tests.benchmarks.live
	$(PY) -m tests.benchmarks.estimates
	$(PY) -m tests.benchmarks.big_upload

screenshots: test-system-packages .venv/.synced-dev node_modules/.installed-dev
	COREBOARD_SCREENSHOT_DIR=docs $(PY) -m pytest tests/browser/test_browser.py

lint: .venv/.synced-dev node_modules/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	.venv/bin/lint-imports --no-cache --no-logo
	node_modules/.bin/eslint $(JS_SOURCES)
	node_modules/.bin/prettier --check $(JS_SOURCES)

format: .venv/.synced-dev node_modules/.installed-dev
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .
	node_modules/.bin/prettier --write $(JS_SOURCES)

typecheck: .venv/.synced-dev
	$(PY) -m mypy .

system-packages:
	@bash .ci/system-packages $(RUN_PACKAGES)

test-system-packages:
	@bash .ci/system-packages $(TEST_PACKAGES)

$(UV):
	python3 -m venv var/bootstrap
	var/bootstrap/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Two stamps, one per need, both from uv.lock: `make run` and `make worker` install the
# runtime dependencies only (no Playwright, mypy, Schemathesis or ruff); `make test` and the
# other tool targets add the `dev` group. Switching between them installs or removes nothing
# needlessly: the runtime sync is --inexact (it leaves the dev group a test run installed),
# and the dev sync, a superset, stamps the runtime one too. The dev sync is exact, so
# packages the lockfile dropped go there.
.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --no-dev --inexact --python python3
	touch $@

.venv/.synced-dev: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --group dev --python python3
	touch $@ .venv/.synced

# Front-end packages from package-lock.json, the same two ways: chart.js (served from
# node_modules) for `make run`; with the tools that check the pages' scripts (ESLint,
# Prettier) and the pages (axe-core) for the test targets. `npm ci` starts from an empty
# node_modules each time, so the full install stamps the runtime one too.
node_modules/.installed: package.json package-lock.json
	NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm ci --omit=dev --no-audit --no-fund
	touch $@

node_modules/.installed-dev: package.json package-lock.json
	NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm ci --no-audit --no-fund
	touch $@ node_modules/.installed
