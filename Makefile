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
SAMPLES := .venv/bin/cpt-samples
TOKENIZER := $(CPT_HOME)/tokenizer/llama3
SAMPLE := $(CPT_HOME)/sample/dolmino
DOMAIN_SAMPLE := $(CPT_HOME)/sample/domain-python
TINY_MODEL := $(CPT_HOME)/models/tiny-llama
SMALL_TOKENIZER := $(CPT_HOME)/tokenizer/small
SMALL_MODEL := $(CPT_HOME)/models/tiny-small
AIRFLOW_PY := .venv-airflow/bin/python
MLFLOW_PORT ?= 5000
MLFLOW_STORE ?= $(CPT_HOME)/mlflow

.PHONY: setup test test-tasks test-dags test-ui test-checks ui-screenshots lint-deploy bench bench-scale demo demo-domain demo-sweep airflow airflow-stop \
	mlflow pods lock clean images image-tasks image-airflow test-images demo-pods bench-images

setup: .venv/.installed .venv-airflow/.installed $(TOKENIZER)/tokenizer.json $(SAMPLE)/.complete \
	$(DOMAIN_SAMPLE)/.complete $(TINY_MODEL)/config.json $(SMALL_TOKENIZER)/tokenizer.json $(SMALL_MODEL)/config.json

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

$(SAMPLE)/.complete: .venv/.installed cpt_local/samples/sample_mix.py
	$(SAMPLES) sample --out $(SAMPLE)

# The domain demo's corpus (Python code, text in `content`), made in the tasks env like the sample.
$(DOMAIN_SAMPLE)/.complete: .venv/.installed cpt_local/samples/sample_mix.py cpt_local/samples/code_corpus.py
	$(SAMPLES) sample --domain python --out $(DOMAIN_SAMPLE)

$(TINY_MODEL)/config.json: .venv/.installed $(TOKENIZER)/tokenizer.json cpt_local/samples/tiny_model.py
	$(SAMPLES) tiny-model --out $(TINY_MODEL) --tokenizer $(TOKENIZER)

# The fast tests' tokenizer (1,024 BPE ids + Llama 3's BOS/EOS, trained on the sample) and its tiny Llama.
$(SMALL_TOKENIZER)/tokenizer.json: .venv/.installed $(SAMPLE)/.complete cpt_local/samples/small_tokenizer.py
	$(SAMPLES) small-tokenizer --out $(SMALL_TOKENIZER) --sample $(SAMPLE)

$(SMALL_MODEL)/config.json: .venv/.installed $(SMALL_TOKENIZER)/tokenizer.json cpt_local/samples/tiny_model.py
	$(SAMPLES) tiny-model --out $(SMALL_MODEL) --tokenizer $(SMALL_TOKENIZER)

# Every test, offline. Slow and S3 tests included; GPU tests never run here. Two sessions, one per
# environment and kind: the jobs' tests (tasks env), the DAG's (real Airflow, orchestration env), the UI's (a real
# Airflow in headless Chromium) and the checks of the docs and the deployment (tasks env). Two run side by side,
# the next when one ends: each alone leaves a core idle much of the time. Output is kept line by line; each
# session ends with its own pytest summary.
test: setup
	$(MAKE) --no-print-directory -j2 --output-sync=line test-tasks test-dags test-ui test-checks

test-tasks: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(TASKS_PY) -m pytest tests/cpt_tasks -m "not gpu and not images" \
		$(PYTEST_ARGS)

# The docs against the code (links, options, defaults, the runnable examples, every make target they name) and
# the deployment checks (lint-deploy's).
test-checks: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(TASKS_PY) -m pytest tests/test_docs.py tests/test_docs_examples.py \
		tests/test_make_targets.py tests/docker tests/helm tests/test_security_rules.py tests/test_no_secrets.py \
		-m "not gpu and not images" $(PYTEST_ARGS)

test-dags: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(AIRFLOW_PY) -m pytest tests/dags --confcutdir=tests/dags \
		-m "not gpu and not images" $(PYTEST_ARGS)

# The UI tests: Airflow standalone on 127.0.0.1 driven in Debian's headless chromium (screenshots in build/ui/).
test-ui: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(TASKS_PY) -m pytest tests/ui -m ui $(PYTEST_ARGS)

# The README's screenshots (docs/ui/trigger-form.png, docs/ui/run-grid.png) taken afresh from today's form by the
# UI test that triggers a run (paths in the form are a neutral /tmp/cpt-ui-…); copied only if the test passes.
ui-screenshots: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(TASKS_PY) -m pytest tests/ui -m ui -k test_trigger_with_changed_params $(PYTEST_ARGS)
	cp build/ui/trigger-form.png build/ui/run-grid.png docs/ui/

# The deployment checks alone (also part of `make test`): hadolint on both Dockerfiles, the chart linted and
# rendered by Helm's Go SDK and every object validated against the Kubernetes schema and the security rules,
# values-airflow.yaml against the chart, and a secret scan of the repository and the rendered chart.
lint-deploy: setup
	$(TASKS_PY) -m pytest tests/docker tests/helm tests/test_security_rules.py tests/test_no_secrets.py $(PYTEST_ARGS)

# The converter against LLM-Foundry's and tiktoken's ceiling (bench/RESULTS.md), then the plan's time against the
# corpus's size (bench/results/plan.md).
bench: setup
	$(TASKS_PY) bench/convert_bench.py --tokenizer $(TOKENIZER) $(BENCH_ARGS)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(TASKS_PY) bench/plan_bench.py --tokenizer $(TOKENIZER) --sample $(SAMPLE)

# One component of real text (40M tokens, 8 files) converted in 1 part and in 4 parts through the CLI, merged and
# verified, then projected onto the 50B plans on 32 pods of 8 cores (bench/results/scale.md; work folder in /tmp).
bench-scale: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(TASKS_PY) bench/scale_bench.py --tokenizer $(TOKENIZER) $(BENCH_ARGS)

# The embedded default: `airflow dags test cpt_dolmino` on the sample, a tiny Llama trained on the CPU.
# CONF: a JSON object of Params merged over the demo's, e.g. `make demo CONF='{"nodes": 2}'` (two training nodes).
# DEMO_ARGS: more options of cpt_local.demo, e.g. DEMO_ARGS=--dry_run (set up and check, run nothing).
CONF ?= {}
DEMO_ARGS ?=
demo: setup
	$(AIRFLOW_PY) -m cpt_local.demo --conf '$(CONF)' $(DEMO_ARGS)

# Continual pretraining on your own corpus (docs/continual-pretraining.md): the same DAG with a small corpus of
# Python code (`cpt-samples sample --domain python`) as the domain and the sample as replay; ends with the
# gained/forgotten table. CONF goes over its Params as in `make demo`.
demo-domain: setup
	$(AIRFLOW_PY) -m cpt_local.demo --domain python --conf '$(CONF)' $(DEMO_ARGS)

# The replay sweep (cpt_replay_sweep) on the same corpus: proxy runs of the tiny model at three replay fractions,
# each evaluated, and the recommendation (its report; a tiny model shows the mechanics, not a real answer).
demo-sweep: setup
	$(AIRFLOW_PY) -m cpt_local.demo --domain python --sweep --conf '$(CONF)' $(DEMO_ARGS)

# The MLflow UI on http://127.0.0.1:5000 over the demo's local tracking store (the runs of train and evaluate;
# the Airflow task pages' "MLflow run" links point here). MLFLOW_STORE=$(CPT_HOME)/demo-pods/mlflow: demo-pods' runs.
mlflow: .venv/.installed
	mkdir -p $(MLFLOW_STORE)
	.venv/bin/mlflow ui --backend-store-uri file://$(abspath $(MLFLOW_STORE)) --host 127.0.0.1 --port $(MLFLOW_PORT)

# The Airflow UI on http://127.0.0.1:8080 with the DAG loaded (local runner, demo Param defaults): scheduler,
# DAG processor, triggerer, API server and one log server, all on 127.0.0.1, parallelism sized to the cores.
# Ctrl-C, or `make airflow-stop` from another shell, stops every process it started (a few seconds).
airflow: setup
	exec $(AIRFLOW_PY) -m cpt_local.airflow_home standalone

# Stops the `make airflow` of this CPT_HOME (its pid file in $(CPT_HOME)/airflow); depends on nothing.
airflow-stop:
	$(AIRFLOW_PY) -m cpt_local.airflow_home stop

# Every pod manifest the kubernetes runner would submit for the default Params (CONF over them), for review:
# `make pods CONF='{"nodes": 2, "gpus": 8}'` writes the training Job (train-job.yaml) instead of its pod.
pods: .venv-airflow/.installed
	$(AIRFLOW_PY) -m cpt_local.pods --out build/pods --conf '$(CONF)'

# The two images, built for real with podman from the repository root (docker/README.md). No image registry is
# reachable here, so the bases are stand-ins built from Debian packages (docker/bases/, cached: rebuilt only when
# their recipe changes) passed through the Dockerfiles' base ARGs. The build trusts $(CA_BUNDLE) (a corporate
# proxy's CA: `make images CA_BUNDLE=/path/ca.pem`; empty: none) through a build secret, never a layer.
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
CONTAINERS_CONF ?= $(CURDIR)/docker/podman/containers.conf
export CONTAINERS_CONF
PODMAN := podman
BUILD_FLAGS = --isolation chroot --network host $(if $(CA_BUNDLE),--secret id=ca_bundle$(comma)src=$(CA_BUNDLE))
comma := ,
TASKS_IMAGE ?= localhost/cpt-tasks:dev
AIRFLOW_IMAGE ?= localhost/cpt-airflow:dev
BASE = PODMAN="$(PODMAN)" BUILD_FLAGS="$(BUILD_FLAGS)" docker/bases/ensure.sh

images: image-tasks image-airflow

image-tasks:
	base=$$($(BASE) python) && $(PODMAN) build $(BUILD_FLAGS) --build-arg PYTHON_IMAGE=$$base \
		-f docker/tasks/Dockerfile -t $(TASKS_IMAGE) .

image-airflow:
	base=$$($(BASE) airflow) && $(PODMAN) build $(BUILD_FLAGS) --build-arg AIRFLOW_IMAGE=$$base \
		-f docker/airflow/Dockerfile -t $(AIRFLOW_IMAGE) .

# The whole DAG as pods: `airflow dags test cpt_dolmino` with CPT_RUNNER=podman on the demo's Params; every step
# runs the pod manifest the kubernetes runner builds, in $(TASKS_IMAGE). Outputs under $(CPT_HOME)/demo-pods/.
demo-pods: setup image-tasks
	$(AIRFLOW_PY) -m cpt_local.demo --runner podman --image $(TASKS_IMAGE) --conf '$(CONF)' $(DEMO_ARGS)

# The images' own tests (not part of `make test`: building takes minutes): containers of both images under the
# pods' security context, `make demo-pods`, then the podman runner on real pods and a second demo-pods run that
# must convert nothing.
test-images: setup images
	CPT_TASKS_IMAGE=$(TASKS_IMAGE) CPT_AIRFLOW_IMAGE=$(AIRFLOW_IMAGE) HF_HUB_OFFLINE=1 $(TASKS_PY) -m pytest tests/images -m images $(PYTEST_ARGS)
	$(MAKE) demo-pods
	CPT_TASKS_IMAGE=$(TASKS_IMAGE) HF_HUB_OFFLINE=1 $(AIRFLOW_PY) -m pytest tests/dags --confcutdir=tests/dags \
		-m images $(PYTEST_ARGS)

# Image sizes and build times, cold and after a one-line code change (bench/results/images.md); --bases also
# rebuilds the stand-in bases: `make bench-images BENCH_ARGS=--bases`.
bench-images:
	bench/images.sh $(BENCH_ARGS)

# Re-resolve both lock files from requirements/*.in.
lock: | $(UV)
	$(UV) pip compile -q --no-header --python-version 3.11 --python-platform x86_64-manylinux_2_28 requirements/tasks.in -o requirements/tasks.lock.txt
	$(UV) pip compile -q --no-header --python-version 3.11 --python-platform x86_64-manylinux_2_28 requirements/airflow.in -o requirements/airflow.lock.txt

clean:
	rm -rf .venv .venv-airflow $(TOOLS) $(CPT_HOME) build
