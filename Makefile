# The two commands: `make demo` and `make test` (and, for a change, `make lint`). Each creates .venv
# when missing and installs the package (editable) with the extras it needs, at the versions of
# constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LINT_STAMP := $(VENV)/.installed-lint

.PHONY: demo test lint setup clean-venv

# test = pytest + the demo and export extras, so one install serves both commands
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dualteacher demo

test: $(STAMP)
	$(PY) -m pytest -q

# ruff (lint and format check) and mypy, as configured in pyproject.toml; `ruff format` fixes the format
$(LINT_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[lint]'
	touch $(LINT_STAMP)

lint: $(LINT_STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/mypy

clean-venv:
	rm -rf $(VENV)
