# One task runner for people, the README and CI.
#   make run    set up .venv, fetch data/, dvc repro (the whole pipeline)
#   make test   set up .venv, lint, type-check, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: run test venv data lint typecheck pytest

venv: $(INSTALLED)

# Rebuilt only when the dependency pins change; otherwise reused as it is.
$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

data: $(INSTALLED)
	digits fetch-data

run: data
	dvc repro

lint: $(INSTALLED)
	ruff check .
	ruff format --check .

typecheck: $(INSTALLED)
	mypy

pytest: $(INSTALLED)
	pytest

test: lint typecheck pytest
