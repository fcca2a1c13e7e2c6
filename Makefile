# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench bench-reports faults clean install browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,embedded]'
	touch $(STAMP)

install: $(STAMP)

# The dashboard test drives Debian's chromium headless; install it once where we may.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver for the dashboard test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
			|| echo "could not install chromium: tests/test_dashboard.py will fail"; \
	else echo "tests/test_dashboard.py needs chromium and chromium-driver (apt-get install chromium chromium-driver as root)"; fi

# Dev mode: the development default secrets are accepted (every other start refuses
# them, see services/secrets_check.py). The benchmarks and the fault suite run their own
# throw-away stacks on this machine, so they are development too.
DEV := PAYMENT_DEV_MODE=true

run: $(STAMP)
	$(DEV) $(BIN)/pika-payment run

test: $(STAMP) browser
	$(BIN)/ruff check services workers schemas ingress ops tests migrations
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check services workers schemas ingress ops tests migrations

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(DEV) $(BIN)/pika-payment bench

bench-reports: $(STAMP)
	$(DEV) $(BIN)/pika-payment bench-reports

faults: $(STAMP)
	$(DEV) $(BIN)/pika-payment faults

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache
