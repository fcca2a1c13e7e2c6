# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench bench-http bench-reports bench-sockets faults token clean install browser wrk lock strimzi-schemas ts-types typescript-generators client-contracts

# Dependencies come from the lock (exact versions, every file's hash checked); the
# project itself is installed on top without resolving anything again. So is the Python
# client (clients/python/): its few dependencies are a subset of dev.lock.
$(STAMP): pyproject.toml requirements/dev.lock clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip install --quiet --no-deps -e clients/python
	touch $(STAMP)

# Regenerate both locks after changing dependencies in pyproject.toml (needs PyPI).
# prod.lock: what the image installs; dev.lock: that plus the test and local-stack extras.
# clients/python/requirements.lock: the client's clean install (with its test extra),
# held to dev.lock's versions so the client is tested with what the service runs.
COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --no-header
LOCK := $(COMPILE) pyproject.toml
lock:
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(LOCK) -o requirements/prod.lock
	$(LOCK) --extra test --extra embedded -o requirements/dev.lock
	$(COMPILE) clients/python/pyproject.toml --extra test --constraint requirements/dev.lock \
		-o clients/python/requirements.lock

install: $(STAMP)

# The dashboard test drives Debian's chromium headless; install it once where we may.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver for the dashboard test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
			|| echo "could not install chromium: tests/test_dashboard.py will fail"; \
	else echo "tests/test_dashboard.py needs chromium and chromium-driver (apt-get install chromium chromium-driver as root)"; fi

# tests/test_kafka_acls.py validates the Strimzi resources in k8s/ with validators
# compiled from Strimzi's CRD schemas: a pinned npm package (tests/strimzi_schemas/
# package-lock.json, integrity hashes checked), installed again when the lock changes.
SCHEMAS := tests/strimzi_schemas
SCHEMAS_STAMP := $(SCHEMAS)/node_modules/.installed
# $(call npm_ci,FOLDER,what fails without it): the locked packages, or why not.
npm_ci = @if command -v npm >/dev/null 2>&1; then \
		cd $(1) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm is not installed: $(2) (install Node.js 20+ with npm)"; fi
$(SCHEMAS_STAMP): $(SCHEMAS)/package.json $(SCHEMAS)/package-lock.json
	$(call npm_ci,$(SCHEMAS),tests/test_kafka_acls.py cannot validate the Strimzi resources)

strimzi-schemas: $(SCHEMAS_STAMP)

# TypeScript types for frontends (clients/typescript/): generated from the service's
# OpenAPI document and JSON Schemas by pinned npm generators (package-lock.json,
# integrity hashes checked). tests/test_typescript_types.py regenerates them and fails
# when the committed files differ; `make ts-types` writes them again.
TS := clients/typescript
TS_STAMP := $(TS)/node_modules/.installed
$(TS_STAMP): $(TS)/package.json $(TS)/package-lock.json
	$(call npm_ci,$(TS),tests/test_typescript_types.py cannot generate the TypeScript types)

typescript-generators: $(TS_STAMP)

ts-types: $(STAMP) $(TS_STAMP)
	$(DEVTOOLS) ts-types

# The Python client's contracts (clients/python/src/pika_payment_client/contracts/) are
# a generated copy of schemas/; tests/test_python_client_contracts.py fails when the
# committed copy differs, and this writes it again.
client-contracts: $(STAMP)
	$(DEVTOOLS) client-contracts

# Dev mode: the development default secrets are accepted (every other start refuses
# them, see services/secrets_check.py). The benchmarks and the fault suite run their own
# throw-away stacks on this machine, so they are development too.
DEV := PAYMENT_DEV_MODE=true
# The development toolkit (devtools/) is not installed with the product: it runs from
# this checkout (python -m puts the current directory, the repository root, on sys.path).
DEVTOOLS := $(DEV) $(BIN)/python -m devtools

run: $(STAMP)
	$(DEVTOOLS) run

# Ruff over the service and the integration kit (the Python client and the examples:
# the client's own ruff settings apply under clients/python). mypy: the service with the
# root settings, the client strict with its own (run from its folder, where its
# pyproject.toml is the configuration mypy finds).
RUFF_PATHS := services workers schemas ingress ops adapters devtools tests migrations clients/python examples
CLIENT_MYPY := cd clients/python && ../../$(BIN)/mypy

test: $(STAMP) browser strimzi-schemas typescript-generators
	$(BIN)/ruff check $(RUFF_PATHS)
	$(BIN)/mypy
	$(CLIENT_MYPY)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check $(RUFF_PATHS)
	$(CLIENT_MYPY)

typecheck: $(STAMP)
	$(BIN)/mypy
	$(CLIENT_MYPY)

bench: $(STAMP)
	$(DEVTOOLS) bench

# The HTTP bench drives the ingress with Debian's wrk; installed once where we may.
wrk:
	@if command -v wrk >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing wrk for make bench-http"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) \
			|| echo "could not install wrk: make bench-http will fail"; \
	else echo "make bench-http needs wrk (apt-get install wrk as root)"; fi

# HTTP reads and waiting writes against a bare endpoint, then the WebSocket fan-out.
bench-http: $(STAMP) wrk
	$(DEVTOOLS) bench-http
	$(DEVTOOLS) bench-sockets

bench-reports: $(STAMP)
	$(DEVTOOLS) bench-reports

bench-sockets: $(STAMP)
	$(DEVTOOLS) bench-sockets

faults: $(STAMP)
	$(DEVTOOLS) faults

# A development token for trying the API: make token SUB=demo-alice [ROLES=admin]
SUB ?= demo-alice
ROLES ?= user
token: $(STAMP)
	@$(DEVTOOLS) token --sub $(SUB) --roles $(ROLES)

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache clients/python/.mypy_cache clients/python/.ruff_cache
