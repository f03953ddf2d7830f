# The few commands people type. Every target sets up .venv itself on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format clean

setup: $(STAMP)  ## create .venv and install the package with its dev extra

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup  ## print the model zoo: parameters and GFLOPs of the 12 reference configs
	$(BIN)/python -m deeplab models

lint: setup  ## ruff lint and format check (notebooks included)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint  ## the whole suite
	$(BIN)/python -m pytest

format: setup  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## remove the environment and caches (data/ and runs/ are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
