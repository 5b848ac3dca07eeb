# Surge: two commands do everything.  `make run` (embedded PostgreSQL, no servers needed)
# and `make test` (real PostgreSQL + Redis + Celery workers).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt requirements.lock | sha1sum | cut -c1-12)

# The test suite's servers (override to point elsewhere).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/surge
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
PYTEST_WORKERS ?= 2

.PHONY: run test lint format bench drill venv migrate clean browser haproxy

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements.lock
	@test -x $(PY) || $(PYTHON) -c 'import ensurepip' 2>/dev/null \
	  || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -c requirements.lock
	@rm -f $(VENV)/.installed-*
	@touch $@

# With no DATABASE_URL, an embedded PostgreSQL under var/postgres; then
# migrate, collectstatic, the demo merchant, and the Procfile (config/devstack.py).
run: venv
	$(PY) -m config.devstack

# promtool (tests/ops/test_alerts.py) comes with Debian's prometheus package,
# installed when missing; the tests run only the binary, never the service.
test: venv browser haproxy
	@scripts/ensure-services.sh "$(TEST_DATABASE_URL)" "$(TEST_REDIS_URL)"
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" \
	CELERY_BROKER_URL="$(TEST_REDIS_URL)" SURGE_ENV=test \
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The admin's browser test drives Debian's chromium through Playwright (never
# Playwright's own browser download). Installed once, quietly, when missing.
CHROMIUM ?= /usr/bin/chromium

browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing chromium for the admin's browser test"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Every scenario, each on a fresh stack: the 100k payroll burst, 20k single
# POSTs offered at 2,000/s with the bare-INSERT baseline before and after, and steady
# at 70% of what that burst sustained, for 3 minutes (~12 minutes). One scenario:
# BENCH_ARGS="--scenario ...".
BENCH_ARGS ?= --scenario all --duration 180

bench: venv
	@scripts/ensure-services.sh "$(TEST_DATABASE_URL)" "$(TEST_REDIS_URL)"
	$(PY) -m bench $(BENCH_ARGS)

# The drill (bench/drill/): 20,000 payments through two web servers behind
# haproxy, two workers, relays and beats, with its own PostgreSQL, Redis (and
# RabbitMQ with BROKER=rabbitmq) restarted under it while every fault runs;
# prints the verdict and appends it to bench/DRILLS.md. More: DRILL_ARGS="--seed
# N --payments N --faults kill-worker,postgres-restart".
BROKER ?= redis
DRILL_ARGS ?=

drill: venv haproxy
	@test "$(BROKER)" != rabbitmq || test -x /usr/lib/rabbitmq/bin/rabbitmq-server || { \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null; }
	$(PY) -m bench.drill --broker $(BROKER) $(DRILL_ARGS)

# The drill's load balancer (make drill, and make test's short drill): Debian's
# haproxy, installed when missing; the drill runs its own, never the service.
haproxy:
	@command -v haproxy >/dev/null || { \
	  echo "installing haproxy for the drill"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null; }

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
