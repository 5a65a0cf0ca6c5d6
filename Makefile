# Two commands from a fresh clone: `make demo` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck console serve sandbox image clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mam-bot demo

test: $(STAMP)
	$(BIN)/ruff check bot commands workflows tests $(wildcard benchmarks)
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check bot commands workflows tests $(wildcard benchmarks)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

console: $(STAMP)
	$(BIN)/mam-bot console

serve: $(STAMP)
	$(BIN)/mam-bot serve

sandbox: $(STAMP)
	$(BIN)/mam-bot sandbox serve

image:
	docker build -t mam-bot .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mam-bot.db
