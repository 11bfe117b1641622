# cpt-pipeline: set-up, tests, benchmarks and the embedded demo.
# `make demo` runs the pipeline on the bundled sample; `make test` runs every test. Both set up first.
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
CPT_HOME ?= $(CURDIR)/.cpt
export CPT_HOME
TASKS_PY := .venv/bin/python
CPT := .venv/bin/cpt-tasks
TOKENIZER := $(CPT_HOME)/tokenizer/llama3
SAMPLE := $(CPT_HOME)/sample/dolmino

.PHONY: setup test test-ui bench demo lock clean

setup: .venv/.installed .venv-airflow/.installed $(TOKENIZER)/tokenizer.json $(SAMPLE)/.complete

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

.venv/.installed: requirements/tasks.lock.txt pyproject.toml | $(UV)
	$(UV) venv -q --allow-existing -p $(PYTHON) .venv
	VIRTUAL_ENV=.venv $(UV) pip sync -q --compile-bytecode requirements/tasks.lock.txt
	VIRTUAL_ENV=.venv $(UV) pip install -q --no-deps -e .
	touch $@

.venv-airflow/.installed: requirements/airflow.lock.txt pyproject.toml | $(UV)
	$(UV) venv -q --allow-existing -p $(PYTHON) .venv-airflow
	VIRTUAL_ENV=.venv-airflow $(UV) pip sync -q --compile-bytecode requirements/airflow.lock.txt
	VIRTUAL_ENV=.venv-airflow $(UV) pip install -q --no-deps -e .
	touch $@

$(TOKENIZER)/tokenizer.json: .venv/.installed
	$(CPT) tokenizer --out $(TOKENIZER)

$(SAMPLE)/.complete: .venv/.installed cpt_tasks/sample_data.py
	$(CPT) sample --out $(SAMPLE)

# Every test, offline. Slow and S3 tests included; GPU tests never run here.
test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(TASKS_PY) -m pytest tests -m "not gpu" $(PYTEST_ARGS)

# Only the UI test: Airflow standalone on 127.0.0.1 driven in Debian's headless chromium (screenshots in build/ui/).
test-ui: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(TASKS_PY) -m pytest tests/ui -m ui $(PYTEST_ARGS)

bench: setup
	$(TASKS_PY) bench/convert_bench.py --tokenizer $(TOKENIZER) $(BENCH_ARGS)

demo: setup
	$(CPT) demo --tokenizer $(TOKENIZER) --sample $(SAMPLE)

# Re-resolve both lock files from requirements/*.in.
lock: | $(UV)
	$(UV) pip compile -q --no-header --python-version 3.11 --python-platform x86_64-manylinux_2_28 requirements/tasks.in -o requirements/tasks.lock.txt
	$(UV) pip compile -q --no-header --python-version 3.11 --python-platform x86_64-manylinux_2_28 requirements/airflow.in -o requirements/airflow.lock.txt

clean:
	rm -rf .venv .venv-airflow $(TOOLS) $(CPT_HOME) build
