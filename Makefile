# Two entry points do all set-up on a fresh machine with Python 3.11+:
#   make demo   builds .venv, installs the workbench, runs the demo
#   make test   builds .venv, installs the workbench with its test tools, runs the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/workbench demo

# Online tests need the internet and are never part of the default run.
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m 'not online' $(PYTEST_ARGS)

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench $(BENCH_ARGS)
