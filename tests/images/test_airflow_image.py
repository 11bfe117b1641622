"""The Airflow image, from inside a running container: Airflow 3.3.2 and the providers at the lock's versions,
the DAG bag without import errors under CPT_RUNNER=kubernetes (the image's default), the trigger form's mix
check registered by airflow_local_settings, and a DAG file that imports nothing heavy."""

from __future__ import annotations

import json
import re

import pytest
from containers import AIRFLOW_IMAGE, ROOT, run_in

pytestmark = pytest.mark.images

HEAVY = ("torch", "transformers", "streaming", "llmfoundry", "composer", "numpy", "datasets", "tiktoken")

CHECK = """
import importlib.metadata as md, json, os, sys
import airflow  # loads $AIRFLOW_HOME/config/airflow_local_settings.py, as every Airflow process does
from jsonschema import FormatChecker
import airflow.sdk, airflow.providers.cncf.kubernetes.operators.pod
before = set(sys.modules)
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=os.path.join(os.environ["AIRFLOW_HOME"], "dags"))
dag = bag.dags.get("cpt_dolmino")
checker = FormatChecker()
print(json.dumps({
    "uid": os.getuid(), "runner": os.environ.get("CPT_RUNNER"), "errors": bag.import_errors,
    "dags": sorted(bag.dags), "tasks": [t.task_id for t in dag.tasks] if dag else [],
    "operator": type(dag.get_task("plan")).__name__ if dag else None,
    "format": "proportions-sum-to-1" in FormatChecker.checkers,
    "good_mix": checker.conforms({"a": 0.5, "b": 0.5}, "proportions-sum-to-1"),
    "bad_mix": checker.conforms({"a": 0.5, "b": 0.2}, "proportions-sum-to-1"),
    "added": sorted(set(sys.modules) - before),
    "versions": {name: md.version(name) for name in ("apache-airflow", "apache-airflow-providers-cncf-kubernetes",
                                                     "apache-airflow-providers-openlineage", "pydantic")},
}))
"""


@pytest.fixture(scope="module")
def report() -> dict:
    proc = run_in(AIRFLOW_IMAGE, "python", "-c", CHECK, pod_like=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_dag_bag_has_no_import_errors_under_the_kubernetes_runner(report):
    assert report["runner"] == "kubernetes" and report["uid"] == 50000
    assert report["errors"] == {} and report["dags"] == ["cpt_dolmino", "cpt_replay_sweep"]
    assert report["tasks"] == ["plan", "convert", "verify", "train", "evaluate"]
    assert report["operator"] == "StepPodOperator"


def test_the_trigger_forms_mix_check_is_registered(report):
    assert report["format"] is True
    assert (report["good_mix"], report["bad_mix"]) == (True, False)


def test_the_dag_imports_nothing_heavy(report):
    added = report["added"]
    assert "cpt_pipeline.runners" in added  # the DAG really was imported after the baseline
    assert not [m for m in added if m.split(".")[0] in HEAVY], added


def test_airflow_and_providers_are_the_locked_versions(report):
    lock = (ROOT / "requirements" / "airflow.lock.txt").read_text()
    for name, version in report["versions"].items():
        assert re.search(rf"^{re.escape(name)}=={re.escape(version)}$", lock, re.M), (name, version)
    assert report["versions"]["apache-airflow"] == "3.3.2"
