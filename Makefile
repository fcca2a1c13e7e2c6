# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench faults clean install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,embedded]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/pika-payment run

test: $(STAMP)
	$(BIN)/ruff check services workers schemas ingress ops tests migrations
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check services workers schemas ingress ops tests migrations

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/pika-payment bench

faults: $(STAMP)
	$(BIN)/pika-payment faults

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache
