# Two commands matter: `make run` (the whole system with sample traffic) and `make test`.
# Everything else is a step they use. Each target installs what it needs on a fresh machine.

SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The local stack's addresses; override to use services you already run.
export ELASTICSEARCH_NODE ?= http://127.0.0.1:9200
export KAFKA_BROKERS ?= 127.0.0.1:9092
export REDIS_HOST ?= 127.0.0.1

.PHONY: docs run test test-unit test-integration test-browser test-faults bench bench-quick bench-table bench-dashboard bench-dependencies bench-alerts browser zipkin-ui stack-up stack-down stack-status lint env-example venv clean

# The compiled fast path is built by the install: a changed .pyx installs again.
$(STAMP): pyproject.toml setup.py $(wildcard panopticon/*/*.pyx)
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "need Python 3.11 or newer (set PY=...)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

stack-up:
	bash infra/stack.sh up

stack-down:
	bash infra/stack.sh down

stack-status:
	bash infra/stack.sh status

# The Procfile plus two processes that keep sample traffic flowing, so a new user sees data: JSON to Kafka,
# and a service instrumented with the OpenTelemetry SDK exporting OTLP to the `otlp` process.
run: venv stack-up zipkin-ui
	@mkdir -p .stack
	@{ cat Procfile; echo 'sample: flask send-sample --count 200 --rate 200 --forever'; \
	   echo 'otlp-sample: flask send-otlp-sample --count 100 --rate 20 --forever'; } > .stack/Procfile.run
	@echo "Dashboard  http://127.0.0.1:$${API_PORT:-3001}/"
	@echo "API        http://127.0.0.1:$${API_PORT:-3001}/query/services?start=1h"
	@echo "API docs   http://127.0.0.1:$${API_PORT:-3001}/docs  (OpenAPI: /openapi.json)"
	@echo "Zipkin UI  http://127.0.0.1:$${API_PORT:-3001}/zipkin/  (Zipkin API: /api/v2, Jaeger API: /api)"
	@echo "Metrics    http://127.0.0.1:$${API_PORT:-3001}/metrics  bridge: http://127.0.0.1:$${BRIDGE_METRICS_PORT:-9464}/metrics"
	@echo "WebSocket  ws://127.0.0.1:$${WS_PORT:-3010}/ws/error-logs"
	@echo "OTLP/HTTP  http://127.0.0.1:$${OTLP_HTTP_PORT:-4318}/v1/traces and /v1/logs (sample service: otel-shop)"
	@echo "Flower     http://127.0.0.1:$${FLOWER_PORT:-5555}/"
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/honcho start -f .stack/Procfile.run -d .

# Everything: lint, then unit, integration, browser and the fault suite (about 30 minutes on 2 cores from a clean
# clone; 47 on a day the machine ran at a third of its speed); the 25 slowest tests are listed at the end.
test: venv lint stack-up browser zipkin-ui
	$(BIN)/pytest -p no:cacheprovider --durations=25 tests/unit tests/integration tests/browser tests/faults

test-unit: venv
	$(BIN)/pytest -p no:cacheprovider tests/unit

test-integration: venv stack-up zipkin-ui
	$(BIN)/pytest -p no:cacheprovider tests/integration

# The fault suite alone (tests/faults, about 11 minutes): kills, outages, 429s, poison, hostile input, Kafka
# security. Faults that hit a service run on a private Kafka/OpenSearch/Redis it starts on other ports.
# Summary table printed at the end and written to tests/faults/results/latest.jsonl.
# The dashboard in a real browser: Debian's chromium driven by Playwright (tests/browser; also saves the
# screenshots under docs/screenshots/).
test-browser: venv stack-up browser zipkin-ui
	$(BIN)/pytest -p no:cacheprovider tests/browser

# Debian's Chromium and a font for the browser tests (Playwright's own browser download cannot work here).
browser:
	@command -v chromium >/dev/null && fc-list 2>/dev/null | grep -qi dejavu || { \
		echo "installing chromium and fonts-dejavu-core with apt-get"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -q && \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; }

# The Zipkin UI (Lens) that `web` serves at /zipkin/, unpacked from Maven Central's zipkin-server exec jar into
# .cache/zipkin/lens (infra/zipkin.sh; done again only when infra/zipkin/pom.xml changes).
zipkin-ui:
	bash infra/zipkin.sh

test-faults: venv stack-up
	$(BIN)/pytest -p no:cacheprovider tests/faults

# Opt-in: the storage door's contract tests on a real Elasticsearch 9 (integ-test zip, no data streams
# module) on 127.0.0.1:9201, started by infra/elasticsearch.sh; Kafka and Redis still come from the stack.
# `bash infra/elasticsearch.sh down` stops that node.
test-elasticsearch: venv stack-up
	bash infra/elasticsearch.sh up
	ELASTICSEARCH_NODE=http://127.0.0.1:9201 SEARCH_ENGINE=auto \
		$(BIN)/pytest -p no:cacheprovider -rs tests/integration/test_storage.py

# Benchmarks against the ceiling of this machine (not part of `make test`; about 11 minutes on 2 cores, on a quiet
# machine): writes bench/results/latest.json, summary.md, perf_table.md (the README's performance table) and PNG
# charts. Sections: ingest, errors, memory, compare (the pipeline of BENCH_BEFORE_REF against the working tree),
# query, otlp, dashboard, dependencies, alerts; `python -m bench --help` for one section.
BENCH_BEFORE_REF ?= dd27c21
bench: venv stack-up browser
	$(BIN)/python -m bench --before-ref $(BENCH_BEFORE_REF)

# The same harness with fewer sweep points and events (a few minutes), written to /tmp/bench-quick: for trying it,
# never for figures.
bench-quick: venv stack-up browser
	$(BIN)/python -m bench --quick --before-ref $(BENCH_BEFORE_REF) --out /tmp/bench-quick

# summary.md and perf_table.md again from bench/results/latest.json (after a change to bench/report.py).
bench-table: venv
	$(BIN)/python -m bench.report bench/results

# Only the dashboard's browser timings (services page with 50 services, a 10,080-point chart), written to
# bench/results/dashboard/ so the full run's bench/results/latest.json is left as it is.
bench-dashboard: venv stack-up browser
	$(BIN)/python -m bench --sections dashboard --out bench/results/dashboard

# Only the service map's timing (/query/dependencies over 7 days, 50 services), written to bench/results/dependencies/.
bench-dependencies: venv stack-up
	$(BIN)/python -m bench --sections dependencies --out bench/results/dependencies
# Only the alert rules' evaluation (200 rules for 50 services), written to bench/results/alerts/.
bench-alerts: venv stack-up
	$(BIN)/python -m bench --sections alerts --out bench/results/alerts

# ruff (style), mypy --strict (types of panopticon/) and import-linter (the direction of imports; contracts in
# pyproject.toml). Part of `make test`.
lint: venv
	$(BIN)/ruff check panopticon tests bench celeryconfig.py wsgi.py setup.py
	$(BIN)/mypy panopticon
	$(BIN)/lint-imports

# .env.example and the variable table of OPERATIONS.md are generated from panopticon/settings.py.
docs env-example: venv
	$(BIN)/python -m panopticon.settings --write-docs

clean:
	rm -rf $(VENV) .pytest_cache
