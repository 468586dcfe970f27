# The few commands people type. Each creates/uses a local virtualenv, so they
# work on a fresh machine with only python3 (>= 3.10) installed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-oldest lint bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,openai,anthropic,server]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/quickstart.py
	$(PY) examples/full_loop.py

test: $(STAMP)
	$(PY) -m pytest

# The provider tests again on the oldest SDK releases we support.
OLDEST := .venv-oldest
OLDEST_SDKS := 'openai==1.66.0' 'anthropic==0.49.0' 'httpx==0.27.2'

$(OLDEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install -q --upgrade pip
	$(OLDEST)/bin/python -m pip install -q -e '.[dev]' $(OLDEST_SDKS)
	touch $(OLDEST)/.installed

test-oldest: $(OLDEST)/.installed
	$(OLDEST)/bin/python -m pytest tests/providers

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(OLDEST) .pytest_cache .mypy_cache .ruff_cache build dist
