"""The chart's values: every key documented in values.yaml and typed in values.schema.json (the two agree key for
key, and the schema refuses unknown keys at every level), and values-airflow.yaml for the official Airflow chart
names exactly what the chart creates."""

from __future__ import annotations

import json
import re

import yaml
from airflow_env import ROOT
from security_rules import CREDENTIAL_ENV, CREDENTIAL_VALUE

CHART = ROOT / "helm" / "cpt-pipeline"
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
AIRFLOW = yaml.safe_load((CHART / "values-airflow.yaml").read_text())
# Free-form string maps: Kubernetes labels, annotations and node selectors.
STRING_MAPS = {"commonLabels", "serviceAccounts.convert.annotations", "serviceAccounts.train.annotations",
               "gpu.nodeSelector"}


def walk_schema(node: dict, path: str = ""):
    """(dotted path, schema node) of every object-typed node, list items included."""
    if node.get("type") == "object":
        yield path, node
        for key, child in (node.get("properties") or {}).items():
            yield from walk_schema(child, f"{path}.{key}".lstrip("."))
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        yield from walk_schema(node["items"], f"{path}[]")


def value_keys(node: object, path: str = ""):
    """Dotted paths of every mapping key in the values; string maps and list items are data, not descended."""
    if isinstance(node, dict) and path not in STRING_MAPS:
        for key, child in node.items():
            yield f"{path}.{key}".lstrip(".")
            yield from value_keys(child, f"{path}.{key}".lstrip("."))


def schema_keys(node: dict, path: str = ""):
    for key, child in (node.get("properties") or {}).items():
        yield f"{path}.{key}".lstrip(".")
        yield from schema_keys(child, f"{path}.{key}".lstrip("."))


def test_schema_refuses_unknown_keys_at_every_level():
    nodes = dict(walk_schema(SCHEMA))
    assert len(nodes) > 15
    for path, node in nodes.items():
        if path in STRING_MAPS:
            assert node["additionalProperties"] == {"type": "string"}, path
        else:
            assert node.get("additionalProperties") is False, f"{path or '<root>'}: additionalProperties is not false"


def test_schema_and_values_have_the_same_keys_all_described():
    assert set(value_keys(VALUES)) == set(schema_keys(SCHEMA))
    for path in schema_keys(SCHEMA):
        node = SCHEMA
        for key in path.split("."):
            node = node["properties"][key]
        assert node.get("description"), f"{path} has no description in values.schema.json"


def test_every_value_is_commented():
    """Each key of values.yaml has a comment line right above it (list items and string-map entries are data
    documented by their parent's comment)."""
    lines = VALUES_TEXT.splitlines()
    uncommented, stack, checked = [], [], 0  # stack: (indent, key) of the enclosing keys; "[]" = a list item
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)(- )?([A-Za-z][\w./-]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = ".".join(key for _, key in stack)
        stack.append((indent, "[]" if match.group(2) else match.group(3)))
        if match.group(2) or "[]" in parent or parent in STRING_MAPS:
            continue
        checked += 1
        if not lines[number - 1].strip().startswith("#"):
            uncommented.append(f"line {number + 1}: {line.strip()}")
    assert uncommented == []
    assert checked == len(set(value_keys(VALUES)))


def airflow_env() -> dict[str, str]:
    return {item["name"]: item["value"] for item in AIRFLOW["env"]}


def test_airflow_values_name_what_the_chart_creates():
    env = airflow_env()
    assert env["CPT_RUNNER"] == "kubernetes"
    assert env["CPT_NAMESPACE"] == "cpt"  # the README installs the chart with -n cpt
    assert json.loads(env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])["extra"] == {"in_cluster": True, "namespace": "cpt"}
    assert env["CPT_TASKS_IMAGE"] == f"{VALUES['image']['repository']}:{VALUES['image']['tag']}"
    assert env["CPT_STORAGE_SECRET"] == VALUES["secrets"]["objectStorage"] == "cpt-object-storage"
    assert env["CPT_HF_SECRET"] == VALUES["secrets"]["hfToken"] == "cpt-hf-token"
    assert env["CPT_MLFLOW_SECRET"] == VALUES["secrets"]["mlflow"] == "cpt-mlflow"
    assert re.match(r"^https?://", env["CPT_MLFLOW_TRACKING_URI"]) and re.match(r"^https?://", env["CPT_MLFLOW_UI_URL"])
    assert env["CPT_CONVERT_SA"] == VALUES["serviceAccounts"]["convert"]["name"] == "cpt-convert"
    assert env["CPT_TRAIN_SA"] == VALUES["serviceAccounts"]["train"]["name"] == "cpt-train"
    assert env["CPT_TRAIN_SUBDOMAIN"] == VALUES["trainNodes"]["name"] == "cpt-train-nodes"
    pvc = VALUES["cache"]["pvc"]
    assert env["CPT_CACHE_PVC"] == (pvc["name"] if pvc["enabled"] else "")
    assert json.loads(env["CPT_GPU_NODE_SELECTOR"]) == VALUES["gpu"]["nodeSelector"]
    assert json.loads(env["CPT_GPU_TOLERATIONS"]) == VALUES["gpu"]["tolerations"]
    assert re.match(r"^s3://[^/]+/", env["CPT_STORAGE_ROOT"])
    subjects = {(s["name"], s["namespace"]) for s in VALUES["podLauncher"]["subjects"]}
    assert subjects == {(AIRFLOW["workers"]["kubernetes"]["serviceAccount"]["name"], "airflow"),
                        (AIRFLOW["triggerer"]["serviceAccount"]["name"], "airflow")}


def test_airflow_values_image_executor_and_lineage():
    lock = (ROOT / "requirements" / "airflow.lock.txt").read_text()
    version = re.search(r"^apache-airflow==(\S+)$", lock, re.M).group(1)
    assert AIRFLOW["airflowVersion"] == AIRFLOW["defaultAirflowTag"] == version
    assert f"apache/airflow:{version}-python3.11" in (ROOT / "docker" / "airflow" / "Dockerfile").read_text()
    assert AIRFLOW["images"]["airflow"]["tag"] not in ("", "latest")
    assert AIRFLOW["executor"] == "KubernetesExecutor"
    transport = json.loads(airflow_env()["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport["type"] == "http" and transport["url"].startswith("http")
    assert AIRFLOW["dags"]["gitSync"]["enabled"] is False and AIRFLOW["dags"]["persistence"]["enabled"] is False
    assert AIRFLOW["securityContexts"]["pod"]["runAsNonRoot"] is True
    assert AIRFLOW["securityContexts"]["containers"]["capabilities"]["drop"] == ["ALL"]


def test_airflow_values_hold_no_credentials():
    for name, value in airflow_env().items():
        assert not CREDENTIAL_ENV.search(name), f"{name} is a credential: map it from a Secret with `secret:`"
        assert not CREDENTIAL_VALUE.search(value), name
    assert AIRFLOW["secret"] == []
