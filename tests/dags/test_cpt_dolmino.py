"""The DAG as Airflow parses it: no import errors, the same shape under both runners, and a file that
imports nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

RUNNERS = ("local", "kubernetes", "podman")


def shape(dag) -> dict:
    """Everything that must not depend on the runner."""
    tasks = {}
    for task in dag.tasks:
        tasks[task.task_id] = {
            "upstream": sorted(task.upstream_task_ids), "downstream": sorted(task.downstream_task_ids),
            "mapped": type(task).__name__ == "MappedOperator", "retries": task.retries,
            "backoff": task.retry_exponential_backoff, "trigger_rule": getattr(task.trigger_rule, "value", task.trigger_rule),
            "outlets": sorted(getattr(o, "name", str(o)) for o in task.outlets or []),
            "map_index_template": getattr(task, "map_index_template", None),
            "links": sorted(link.name for link in getattr(task, "operator_extra_links", None) or ()),
        }
    return {"dag_id": dag.dag_id, "tasks": tasks, "params": sorted(dag.params), "max_active_runs":
            dag.max_active_runs, "catchup": dag.catchup, "schedule": str(dag.schedule),
            "tags": sorted(dag.tags)}


@pytest.mark.parametrize("runner", RUNNERS)
def test_dagbag_parses_without_errors(load_dag, runner):
    dag = load_dag(runner)
    assert dag is not None and dag.doc_md
    assert [t for t in dag.task_ids if f"**{t}**" not in dag.doc_md] == []  # the doc describes every step
    expected = {"local": "LocalStepOperator", "kubernetes": "StepPodOperator", "podman": "PodmanStepOperator"}[runner]
    assert type(dag.get_task("plan")).__name__ == expected


def test_same_shape_under_every_runner(load_dag):
    local, kube = shape(load_dag("local")), shape(load_dag("kubernetes"))
    assert local == kube == shape(load_dag("podman"))
    tasks = local["tasks"]
    assert list(tasks) == ["plan", "convert", "verify", "train", "evaluate"]
    assert tasks["plan"]["downstream"] == ["convert"] and tasks["convert"]["downstream"] == ["verify"]
    assert tasks["verify"]["downstream"] == ["train"] and tasks["train"]["upstream"] == ["verify"]
    assert tasks["train"]["downstream"] == ["evaluate"] and tasks["evaluate"]["upstream"] == ["train"]
    assert tasks["convert"]["mapped"] and tasks["convert"]["map_index_template"] == "{{ subset }}"
    assert all(t["retries"] == 3 and t["backoff"] for t in tasks.values())
    assert tasks["verify"]["trigger_rule"] == "none_failed"  # already complete (skipped) subsets still get verified
    assert tasks["train"]["trigger_rule"] == "all_success"
    assert tasks["evaluate"]["trigger_rule"] == "none_failed"  # a skipped train reaches evaluate's gate
    assert tasks["verify"]["outlets"] == ["cpt_dolmino/verified"]  # an AssetAlias: the components of each run
    assert tasks["train"]["outlets"] == ["cpt_dolmino/checkpoint"]
    assert tasks["evaluate"]["outlets"] == ["cpt_dolmino/eval"]
    assert {t: v["links"] for t, v in tasks.items() if v["links"]} == {"train": ["MLflow run"],
                                                                      "evaluate": ["MLflow run"]}
    assert local["max_active_runs"] == 1 and local["catchup"] is False and "cpt" in local["tags"]
    assert local["schedule"] == "@weekly"


def test_schedule_retries_and_concurrent_conversions_come_from_the_deployment(load_dag):
    dag = load_dag("local", CPT_SCHEDULE="@daily", CPT_RETRIES="1", CPT_MAX_ACTIVE_CONVERT="4")
    assert dag.schedule == "@daily" and dag.get_task("train").retries == 1
    assert dag.get_task("convert").partial_kwargs["max_active_tis_per_dagrun"] == 4
    assert load_dag("local", CPT_SCHEDULE="none").schedule is None
    from cpt_pipeline.settings import Deployment

    assert Deployment().max_active_convert == 32  # the default: one wave of 32 convert pods


def test_bad_deployment_settings_are_import_errors(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("CPT_RUNNER", "docker")
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert any("CPT_RUNNER='docker'" in err for err in bag.import_errors.values())
    monkeypatch.setenv("CPT_RUNNER", "kubernetes")
    monkeypatch.setenv("CPT_GPU_TOLERATIONS", '{"key": "x"}')
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert any("CPT_GPU_TOLERATIONS: expected a JSON list" in err for err in bag.import_errors.values())
    monkeypatch.delenv("CPT_GPU_TOLERATIONS")
    monkeypatch.setenv("CPT_MAX_ACTIVE_CONVERT", "0")
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert any("CPT_MAX_ACTIVE_CONVERT=0: expected 1 or more" in err for err in bag.import_errors.values())


HEAVY = ("torch", "transformers", "streaming", "llmfoundry", "composer", "numpy", "datasets", "tiktoken")


def test_dag_file_imports_nothing_heavy():
    """Parse time: the DAG adds only the light core to what `import airflow.sdk` and the KPO provider load."""
    code = (
        "import sys, json, importlib.util; import airflow.sdk; "
        "import airflow.providers.cncf.kubernetes.operators.pod; before = set(sys.modules); "
        f"spec = importlib.util.spec_from_file_location('d', {str(ROOT / 'dags' / 'cpt_dolmino.py')!r}); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"CPT_RUNNER": "kubernetes", "PATH": "/usr/bin:/bin",
                              "AIRFLOW_HOME": str(ROOT / "build" / "airflow-parse")})
    added = json.loads(out.stdout.strip().splitlines()[-1])
    assert not [m for m in added if m.split(".")[0] in HEAVY], added
    assert {m.split(".")[0] for m in added} <= {"airflow", "croniter", "cpt_tasks", "cpt_pipeline", "pydantic", "pydantic_core", "annotated_types",
                                                 "typing_inspection", "d", "decimal", "_decimal", "_pydecimal",
                                                 "numbers", "openlineage", "attr", "attrs"}, added
