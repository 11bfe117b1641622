"""The pods the DAG would submit (``python -m cpt_local.pods``, the provider's own pod builder, run in
the Airflow env with the Airflow values' environment) against the security rules and against what the chart and
the tasks image provide: the chart's ServiceAccounts and Secret names, the pod-launcher namespace, the image's
user and cache paths."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml
from airflow_env import AIRFLOW_BIN, ROOT
from security_rules import check_pod_spec

CHART = ROOT / "helm" / "cpt-pipeline"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
AIRFLOW_VALUES = yaml.safe_load((CHART / "values-airflow.yaml").read_text())
TASKS_DOCKERFILE = (ROOT / "docker" / "tasks" / "Dockerfile").read_text()


def render(tmp_path_factory, *conf: str) -> dict[str, dict]:
    """`make pods [CONF=...]` with the Airflow values' environment: file name -> manifest."""
    out = tmp_path_factory.mktemp("pods")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPT_")}
    env.update({item["name"]: item["value"] for item in AIRFLOW_VALUES["env"]})  # as the deployed Airflow has it
    env["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow-home"))
    proc = subprocess.run([str(AIRFLOW_BIN / "python"), "-m", "cpt_local.pods", "--out", str(out), *conf],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(out.glob("*.yaml"))}


@pytest.fixture(scope="module")
def pods(tmp_path_factory) -> dict[str, dict]:
    return render(tmp_path_factory)


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict:
    """The training step over two nodes of 8 GPUs (`make pods CONF='{"nodes": 2, "gpus": 8}'`)."""
    rendered = render(tmp_path_factory, "--conf", '{"nodes": 2, "gpus": 8}')
    assert "train.yaml" not in rendered
    return rendered["train-job.yaml"]


def test_every_dag_pod_passes_the_security_rules(pods):
    assert len(pods) == 10  # plan, six conversions, verify, train, evaluate
    assert {name: check_pod_spec(pod) for name, pod in pods.items() if check_pod_spec(pod)} == {}


def test_dag_pods_use_what_the_chart_creates(pods):
    accounts = {sa["name"] for sa in VALUES["serviceAccounts"].values()}
    secrets = set(VALUES["secrets"].values())
    for name, pod in pods.items():
        spec = pod["spec"]
        assert pod["metadata"]["namespace"] == "cpt", name  # the chart's release namespace in the README
        assert spec["serviceAccountName"] in accounts, name
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for c in spec["containers"] for e in c.get("env") or []
                if "secretKeyRef" in (e.get("valueFrom") or {})}
        assert refs and refs <= secrets, (name, refs)
    assert pods["train.yaml"]["spec"]["serviceAccountName"] == VALUES["serviceAccounts"]["train"]["name"]
    assert pods["train.yaml"]["spec"]["nodeSelector"] == VALUES["gpu"]["nodeSelector"]
    assert pods["plan.yaml"]["spec"]["serviceAccountName"] == VALUES["serviceAccounts"]["convert"]["name"]


def test_dag_pods_fit_the_tasks_image(pods):
    uid = int(re.search(r"^USER (\d+)", TASKS_DOCKERFILE, re.M).group(1))
    assert uid == VALUES["podSecurityContext"]["runAsUser"]
    for name, pod in pods.items():
        context = pod["spec"]["securityContext"]
        assert (context["runAsUser"], context["fsGroup"]) == (uid, VALUES["podSecurityContext"]["fsGroup"]), name
        base = pod["spec"]["containers"][0]
        assert base["image"] == next(e["value"] for e in AIRFLOW_VALUES["env"] if e["name"] == "CPT_TASKS_IMAGE")
        assert base["command"] == ["cpt-tasks"]
        assert "/cache" in {m["mountPath"] for m in base["volumeMounts"]}, name
        env = {e["name"]: e.get("value") for e in base.get("env") or []}
        for var in ("HF_HOME", "CPT_CACHE_DIR", "XDG_CACHE_HOME"):
            assert env[var].startswith("/cache/") and f"{var}={env[var]}" in TASKS_DOCKERFILE, (name, var)


def test_training_job_passes_the_security_rules_and_meets_the_charts_service(job):
    assert check_pod_spec(job) == []
    template = job["spec"]["template"]
    env = {item["name"]: item["value"] for item in AIRFLOW_VALUES["env"]}
    assert template["spec"]["subdomain"] == env["CPT_TRAIN_SUBDOMAIN"] == VALUES["trainNodes"]["name"]
    service = (CHART / "templates" / "service-train-nodes.yaml").read_text()
    policy = (CHART / "templates" / "networkpolicy.yaml").read_text()
    for key, value in [("cpt-pipeline/train-node", "true")]:
        assert template["metadata"]["labels"][key] == value
        assert f'{key}: "{value}"' in service and policy.count(f'{key}: "{value}"') == 2
    assert template["spec"]["serviceAccountName"] == VALUES["serviceAccounts"]["train"]["name"]
    assert template["spec"]["nodeSelector"] == VALUES["gpu"]["nodeSelector"]
    assert job["metadata"]["namespace"] == "cpt"
