# legalstream — `make run` serves the sample cases, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: install run test lint format eval bench bench-quick screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/legalstream serve

test: install
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: install
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

# Retrieval quality on both eval sets; options: make eval EVAL_ARGS="--set contracts --json out.json"
eval: install
	$(PY) -m legalstream.rag.eval $(EVAL_ARGS)

bench: install
	$(PY) bench/fanout.py
	$(PY) bench/retrieval.py
	$(PY) bench/agent.py

bench-quick: install
	$(PY) bench/fanout.py --quick

# Refresh docs/img/ from the browser tests (they use a temp dir otherwise).
screenshots: install
	LEGALSTREAM_SCREENSHOTS=$(CURDIR)/docs/img $(VENV)/bin/pytest -q tests/test_web.py -k browser

clean:
	rm -rf $(VENV) .data .pytest_cache
