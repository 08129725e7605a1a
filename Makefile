# The one entry point for every developer task. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
VENV := .venv
PY := $(VENV)/bin/python
# uv, at a pinned version, in a tool environment of its own under .cache (nothing global needed).
UV := .cache/uv-$(UV_VERSION)/bin/uv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# pytest-xdist workers for make test; each test module runs whole on one (its tests may share state).
TEST_WORKERS ?= 2

.PHONY: help
help: ## list the tasks
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv .cache/uv-$(UV_VERSION)
	.cache/uv-$(UV_VERSION)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.PHONY: setup
setup: $(UV) ## install the whole workspace into one virtual environment (.venv) from uv.lock
	$(UV) sync --all-packages --frozen --python 3.11

.PHONY: run
run: setup ## run the whole stack locally: Kafka, migrations, every service, demo data (Ctrl-C stops it)
	$(PY) scripts/stack.py

.PHONY: protos
protos: ## regenerate Python code and type stubs from protos/ into libs/protos
	scripts/gen_protos.sh

.PHONY: protos-check
protos-check: ## fail when the committed generated code differs from what protos/ generates
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	scripts/gen_protos.sh "$$tmp" >/dev/null 2>&1; \
	if ! diff -r -x __pycache__ "$$tmp/ach" libs/protos/ach >/dev/null; then \
	  echo "generated protobuf code is stale: run 'make protos' and commit"; diff -r -q -x __pycache__ "$$tmp/ach" libs/protos/ach || true; exit 1; fi; \
	echo "generated protobuf code is up to date"

.PHONY: asyncapi
asyncapi: setup ## write docs/asyncapi.yaml (the events, for partners) from the topic table and the protos
	$(PY) scripts/gen_asyncapi.py docs/asyncapi.yaml

.PHONY: asyncapi-check
asyncapi-check: setup ## fail when docs/asyncapi.yaml is not what the code gives
	$(PY) scripts/gen_asyncapi.py --check docs/asyncapi.yaml

.PHONY: migrate
migrate: setup ## apply every service's database migrations (DATABASE_URL or the SQLite defaults)
	for s in identity screening referrals directory measurement funding notifications; do $(VENV)/bin/ach-$$s migrate; done

.PHONY: migration
migration: ## write a new migration: make migration SERVICE=referrals MESSAGE="add x"
	$(PY) scripts/new_migration.py "$(SERVICE)" "$(MESSAGE)"

.PHONY: kafka
kafka: ## start the local Kafka broker (KRaft, jars from Maven Central) in the background
	scripts/kafka/broker.sh start

.PHONY: kafka-stop
kafka-stop: ## stop the local Kafka broker
	scripts/kafka/broker.sh stop

.PHONY: postgres
postgres: ## start the throwaway PostgreSQL server the tests use (installs Debian's package if absent)
	scripts/postgres/server.sh start

.PHONY: postgres-stop
postgres-stop:
	scripts/postgres/server.sh stop

.PHONY: lint
lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs services tests scripts

.PHONY: fmt
fmt: setup ## format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: test-infra
test-infra:
	@if [ -z "$${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then scripts/kafka/broker.sh start; fi
	@if [ -z "$${TEST_DATABASE_URL:-}" ]; then scripts/postgres/server.sh start; fi
	@scripts/browser/chromium.sh
	@scripts/prometheus/install.sh

# The tests' Go-built tools (kube-apiserver and etcd, the OpenTelemetry Collector; cached under
# .cache after the first build) start building at once, beside the checks; the tests that need them
# wait for the build (it holds a lock).
.PHONY: test-tools
test-tools:
	@mkdir -p .cache
	@nohup scripts/kube/build.sh > .cache/kube-build.log 2>&1 &
	@nohup scripts/otelcol/build.sh > .cache/otelcol-build.log 2>&1 &

.PHONY: test
test: test-tools setup protos-check asyncapi-check lint helm-check image-check-sample test-infra ## everything CI checks: generated code, lint, types, and all tests on real Kafka and PostgreSQL
	TEST_DATABASE_URL="$${TEST_DATABASE_URL:-$$(scripts/postgres/server.sh url)}" \
	  $(VENV)/bin/pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

.PHONY: bench
bench: setup test-infra ## benchmarks: prints a table and writes bench/results.json
	TEST_DATABASE_URL="$${TEST_DATABASE_URL:-$$(scripts/postgres/server.sh url)}" $(PY) -m bench

.PHONY: helm-check
helm-check: setup ## render the Helm chart and validate every manifest strictly (builds helm with go install)
	scripts/helm_check.sh

.PHONY: image-check image-check-sample
IMAGE_CHECK_SERVICES ?=
image-check-sample: setup ## image-check for one service (make test: the Dockerfile is the same for all)
	$(PY) scripts/image_check.py screening

image-check: setup ## build service images' contents as services/Dockerfile says, without Docker, and run them (all, or IMAGE_CHECK_SERVICES)
	$(PY) scripts/image_check.py $(IMAGE_CHECK_SERVICES)

.PHONY: certs
certs: setup ## create the local stack's development CA and partner certificates (.data/pki); make run does it too
	$(PY) scripts/stack.py --certs-only
