# The few commands people type. Every target sets up .venv itself on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: setup dev demo check test lint format lab student reproduce bench clean

setup: $(STAMP)  ## create .venv with the package, the course and export extras, at constraints.txt's versions

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# pip installs without compiling (--no-compile), then compileall compiles on every core: pip compiles the ~16,000
# files of the environment (torch's CUDA build among them) on one core. It took 81 + 46 s instead of 152 s on 2 cores
# (AMD Zen 3). compileall's exit status is not checked: a few files of torch's are Python 3.12 syntax that no 3.11
# compiles (pip skips them too).
COMPILE := $(BIN)/python -m compileall -qq -j 0 $(VENV)/lib > /dev/null || true

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[course,export]'
	$(COMPILE)
	touch $(STAMP)

dev: $(DEV_STAMP)  ## add the dev extra: pytest, nbval, ruff, and the reference toolbox and peers tests compare with

$(DEV_STAMP): pyproject.toml constraints.txt | $(BIN)/python  # one pip run for the package and its dev extra
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[dev]'
	$(COMPILE)
	touch $(STAMP) $(DEV_STAMP)

demo: setup  ## make the toy dataset, train a toy DeepLabV3+ on the CPU (~10 min on 2 cores), print its per-class IoU
	$(BIN)/python data_scripts/make_toy.py --root data
	$(BIN)/python -m deeplab train --config toy-r50-d16 --data-root data --out runs/demo

lint: dev  ## ruff lint and format check (notebooks included)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Both tiers run on pytest-xdist workers (one per core, at most 4): the notebooks on one of them, in their order
# (conftest.py).
PYTEST := $(BIN)/python -m pytest --numprocesses auto --maxprocesses 4

check: lint  ## the quick tier for the edit loop: lint and the tests not marked slow (no notebooks, browser or long runs)
	$(PYTEST) -m "not slow"

test: lint  ## the whole suite: every test, the notebooks under nbval, the JupyterLab test in a browser
	$(PYTEST)

lab: setup  ## start JupyterLab on the course notebooks (with the environment on PATH, for %tensorboard)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter lab notebooks

student: setup  ## student copies of the notebooks in student/: solutions out, outputs cleared, stubs to fill in
	$(BIN)/python -m deeplab.course.student --notebooks notebooks --out student

reproduce: setup  ## smoke run of the batch reproduction on the toy data; DATA=dir [CONFIGS=a,b] for real runs
	$(if $(DATA),,$(BIN)/python data_scripts/make_toy.py --root data)
	$(BIN)/python -m deeplab reproduce --configs $(or $(CONFIGS),all) --data-root $(or $(DATA),data) \
		--out $(if $(DATA),runs/repro,runs/repro-smoke) $(if $(DATA),,--smoke)

# `python -m benchmarks` runs `models` (train step and eval forward, ours against peer implementations), then
# `evaluation` (`python -m deeplab evaluate` end to end against the reference's forward): ~25 min on 2 CPU cores.
bench: dev  ## model speed and memory against peers, then end-to-end evaluation; writes benchmarks/results/*.md
	$(BIN)/python -m benchmarks

format: dev  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## remove the environment and caches (data/ and runs/ are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
