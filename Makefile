# The few commands people type. Each creates/uses a local virtualenv, so they
# work on a fresh machine with only python3 (>= 3.10) installed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-all test-oldest test-frameworks first-hour lint bench install clean

# The first run installs about 100 packages (1-2 minutes): pip's lines show the progress.
$(STAMP): pyproject.toml
	@echo "== creating $(VENV) and installing logos-shift with its dev, SDK and server extras"
	@echo "   (first run only; pip prints each package as it goes)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar off -e '.[dev,openai,anthropic,google-genai,server,postgres]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/quickstart.py
	$(PY) examples/full_loop.py

# The fast tier (a few minutes): no slow tests, no PostgreSQL. test-all is what CI runs:
# every tier, PostgreSQL too when LOGOS_SHIFT_TEST_POSTGRES_URL is set.
test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest --all

# The README's quick start and self-hosting section, run literally in a fresh virtualenv
# made from the built wheel (tests/first_hour.py).
first-hour: $(STAMP)
	$(PY) tests/first_hour.py

# The provider tests again on the oldest SDK releases we support.
OLDEST := .venv-oldest
OLDEST_SDKS := 'openai==1.66.0' 'anthropic==0.49.0' 'httpx==0.27.2'
# google-genai 1.20 needs httpx >= 0.28, so its oldest run has an environment of its own.
OLDEST_GENAI := .venv-oldest-genai
OLDEST_GENAI_SDKS := 'google-genai==1.20.0'

$(OLDEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install -q --upgrade pip
	$(OLDEST)/bin/python -m pip install -q -e '.[dev]' $(OLDEST_SDKS)
	touch $(OLDEST)/.installed

$(OLDEST_GENAI)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST_GENAI)
	$(OLDEST_GENAI)/bin/python -m pip install -q --upgrade pip
	$(OLDEST_GENAI)/bin/python -m pip install -q -e '.[dev]' $(OLDEST_GENAI_SDKS)
	touch $(OLDEST_GENAI)/.installed

test-oldest: $(OLDEST)/.installed $(OLDEST_GENAI)/.installed
	$(OLDEST)/bin/python -m pytest tests/providers
	$(OLDEST_GENAI)/bin/python -m pytest tests/providers/google_genai

# The framework tier (tests/frameworks): real agent frameworks over the real SDKs against the
# fake provider, in three environments because their SDK requirements conflict:
#   newest:  openai-agents, pydantic-ai, LangChain on openai 3.x / anthropic 2.x
#   openai2: instructor and llama-index, whose newest releases need openai < 3 resp. jiter < 0.15
#   oldest:  the oldest release of each we support, on openai 1.x / anthropic 0.x
#            (opentelemetry-api pinned: pydantic-ai 1.0.0 imports opentelemetry._events,
#            which later releases removed)
FW_TEST := 'pytest>=8' 'pytest-timeout>=2.3'
FW_NEWEST := .venv-frameworks
FW_NEWEST_PKGS := 'openai==3.57.0' 'anthropic==2.16.0' 'openai-agents==0.24.0' \
	'pydantic-ai-slim[openai,anthropic]==2.68.0' 'langchain-openai==1.8.1' 'langchain-anthropic==1.7.10'
FW_NEWEST_TESTS := test_openai_agents.py test_pydantic_ai.py test_langchain_openai.py \
	test_langchain_anthropic.py test_sdk_points.py
FW_OPENAI2 := .venv-frameworks-openai2
FW_OPENAI2_PKGS := 'openai==2.54.0' 'anthropic==2.16.0' 'instructor==1.17.0' 'llama-index-llms-openai==0.8.3'
FW_OPENAI2_TESTS := test_instructor.py test_llama_index.py test_sdk_points.py
FW_OLDEST := .venv-frameworks-oldest
FW_OLDEST_PKGS := 'openai==1.109.1' 'anthropic==0.69.0' 'openai-agents==0.1.0' \
	'pydantic-ai-slim[openai,anthropic]==1.0.0' 'langchain-core==1.0.0' 'langchain-openai==1.0.0' \
	'langchain-anthropic==1.0.0' 'instructor==1.9.0' 'llama-index-llms-openai==0.6.0' \
	'opentelemetry-api==1.37.0'

%/.installed-frameworks: pyproject.toml Makefile
	$(PYTHON) -m venv $*
	$*/bin/python -m pip install -q --upgrade pip
	$*/bin/python -m pip install -q -e . $(FW_TEST) $(FW_PKGS)
	touch $@

$(FW_NEWEST)/.installed-frameworks: FW_PKGS = $(FW_NEWEST_PKGS)
$(FW_OPENAI2)/.installed-frameworks: FW_PKGS = $(FW_OPENAI2_PKGS)
$(FW_OLDEST)/.installed-frameworks: FW_PKGS = $(FW_OLDEST_PKGS)

test-frameworks: $(FW_NEWEST)/.installed-frameworks $(FW_OPENAI2)/.installed-frameworks \
		$(FW_OLDEST)/.installed-frameworks
	$(FW_NEWEST)/bin/python -m pytest --frameworks $(addprefix tests/frameworks/,$(FW_NEWEST_TESTS))
	$(FW_OPENAI2)/bin/python -m pytest --frameworks $(addprefix tests/frameworks/,$(FW_OPENAI2_TESTS))
	$(FW_OLDEST)/bin/python -m pytest --frameworks tests/frameworks

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(OLDEST) $(FW_NEWEST) $(FW_OPENAI2) $(FW_OLDEST) .pytest_cache .mypy_cache .ruff_cache build dist
