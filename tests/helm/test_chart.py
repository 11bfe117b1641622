"""helm/cpt-pipeline rendered by the real Helm library (Helm v4's Go SDK via helm-python-sdk): `helm lint
--strict` is clean, every object of the default install and of an install with every optional feature on is
valid against the Kubernetes schema (kubernetes-validate, strict) and breaks no security rule, bad values are
refused, and what the objects say agrees with the package (the mix, the plan's parameters)."""

from __future__ import annotations

import json

import pytest
from airflow_env import ROOT, run_python_tool
from security_rules import check_objects

from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.mix import load_mix
from cpt_pipeline.params import param_schemas

CHART = ROOT / "helm" / "cpt-pipeline"
KUBE_VERSIONS = ["1.30.0", "1.37.0"]  # the chart's kubeVersion floor and the newest schema kubernetes-validate has
STANDARD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                   "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of", "app.kubernetes.io/component",
                   "helm.sh/chart")
# KubernetesPodOperator's calls (cncf-kubernetes 10.25) and nothing more.
KPO_RULES = {"pods": ["create", "get", "list", "watch", "patch", "delete"], "pods/log": ["get"],
             "pods/exec": ["create", "get"], "events": ["list", "watch"]}
# KubernetesJobOperator's (multi-node training, trainNodes.enabled) on top: no Services (the chart's own).
JOB_RULES = {"jobs": ["create", "get", "list", "watch", "delete"], "jobs/status": ["get"]}
NODE_LABEL = {"cpt-pipeline/train-node": "true"}
BAD_VALUES = {
    "unknown-key": ({"cache": {"pvc": {"sise": "1Gi"}}}, "additional properties 'sise' not allowed"),
    "latest-tag": ({"image": {"tag": "latest"}}, "/image/tag"),
    "pod-local-tracking-store": ({"mlflow": {"trackingUri": "file:///tmp/mlruns"}}, "/mlflow/trackingUri"),
    "wildcard-subject": ({"podLauncher": {"subjects": [{"name": "*", "namespace": "airflow"}]}},
                         "/podLauncher/subjects/0/name"),
    "unknown-mix": ({"pipeline": {"mix": "no-such-mix"}}, 'pipeline.mix "no-such-mix"'),
    "namespace-create-without-name": ({"namespace": {"create": True}}, "namespace.create"),
    "service-name-not-a-dns-label": ({"trainNodes": {"name": "Train_Nodes"}}, "/trainNodes/name"),
}
BROKEN_POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
              "spec": {"containerz": [{"name": "c", "image": "busybox:1.36"}]}}


@pytest.fixture(scope="module")
def helm_out() -> dict:
    """One run of the Helm tool: the default install, the all-features install and the refused values."""
    base = {"release": "cpt-pipeline", "namespace": "cpt"}
    jobs = [{"id": "default", **base},
            {"id": "all", **base, "namespace": "airflow", "values_files": [str(CHART / "ci/all-features-values.yaml")]}]
    jobs.append({"id": "one-node", **base, "values": {"trainNodes": {"enabled": False}}})
    jobs += [{"id": key, **base, "values": values} for key, (values, _) in BAD_VALUES.items()]
    request = {"chart": str(CHART), "kube_versions": KUBE_VERSIONS, "jobs": jobs, "validate": [BROKEN_POD]}
    return run_python_tool("helm_tool.py", stdin=json.dumps(request))


def objects(helm_out: dict, job: str) -> list[dict]:
    assert "render_error" not in helm_out[job], helm_out[job]["render_error"]
    return [o["object"] for o in helm_out[job]["objects"]]


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


@pytest.mark.parametrize("job", ["default", "all"])
def test_helm_lint_strict_is_clean(helm_out, job):
    report = helm_out[job]["lint"]
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # only the "icon is recommended" info


@pytest.mark.parametrize("job", ["default", "all"])
def test_every_object_is_valid_kubernetes(helm_out, job):
    rendered = helm_out[job]["objects"]
    assert rendered
    assert {o["template"]: o["schema_errors"] for o in rendered if o["schema_errors"]} == {}


def test_kubernetes_validation_really_runs(helm_out):
    assert set(helm_out["validate"][0]) == set(KUBE_VERSIONS)  # an unknown field fails in both versions


def test_what_each_install_renders(helm_out):
    default = sorted((o["kind"], o["metadata"]["name"]) for o in objects(helm_out, "default"))
    assert default == [("ConfigMap", "cpt-pipeline-config"), ("Pod", "cpt-pipeline-test-tasks-image"),
                       ("Role", "cpt-pipeline-pod-launcher"), ("RoleBinding", "cpt-pipeline-pod-launcher"),
                       ("Service", "cpt-train-nodes"), ("ServiceAccount", "cpt-convert"),
                       ("ServiceAccount", "cpt-train")]
    every = {o["kind"] for o in objects(helm_out, "all")}
    assert every == {"ConfigMap", "Pod", "Role", "RoleBinding", "ServiceAccount", "Namespace",
                     "PersistentVolumeClaim", "ResourceQuota", "NetworkPolicy", "Service"}
    one_node = sorted((o["kind"], o["metadata"]["name"]) for o in objects(helm_out, "one-node"))
    assert one_node == [o for o in default if o[0] != "Service"]


@pytest.mark.parametrize("job", ["default", "all"])
def test_security_rules_hold_for_every_object(helm_out, job):
    objs = objects(helm_out, job)
    assert check_objects(objs) == []
    assert not by_kind(objs, "Secret"), "the chart references existing Secrets and never creates one"


@pytest.mark.parametrize("job", ["default", "all", "one-node"])
def test_pod_launcher_role_has_exactly_the_kpo_and_job_verbs_in_the_pods_namespace(helm_out, job):
    objs = objects(helm_out, job)
    namespace = "cpt-pods" if job == "all" else "cpt"
    (role,), (binding,) = by_kind(objs, "Role"), by_kind(objs, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    assert all(len(r["apiGroups"]) == 1 and len(r["resources"]) == 1 for r in role["rules"])
    assert {r["resources"][0]: r["verbs"] for r in role["rules"] if r["apiGroups"] == [""]} == KPO_RULES
    batch = {r["resources"][0]: r["verbs"] for r in role["rules"] if r["apiGroups"] == ["batch"]}
    assert batch == ({} if job == "one-node" else JOB_RULES)  # Jobs only when multi-node training is on
    assert {g for r in role["rules"] for g in r["apiGroups"]} <= {"", "batch"}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert [(s["name"], s["namespace"]) for s in binding["subjects"]] == [("airflow-worker", "airflow"),
                                                                          ("airflow-triggerer", "airflow")]


@pytest.mark.parametrize("job", ["default", "all"])
def test_standard_labels_and_namespace_on_every_object(helm_out, job):
    namespace = "cpt" if job == "default" else "cpt-pods"
    for obj in objects(helm_out, job):
        labels = obj["metadata"]["labels"]
        assert all(labels.get(key) for key in STANDARD_LABELS), (obj["kind"], labels)
        assert labels["app.kubernetes.io/instance"] == "cpt-pipeline"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]
    if job == "all":
        assert all(o["metadata"]["labels"]["team"] == "ml-platform" for o in objects(helm_out, job))


def test_service_accounts_carry_workload_identity_and_no_token(helm_out):
    default = {sa["metadata"]["name"]: sa for sa in by_kind(objects(helm_out, "default"), "ServiceAccount")}
    assert set(default) == {"cpt-convert", "cpt-train"}
    assert all(sa["automountServiceAccountToken"] is False for sa in default.values())
    every = {sa["metadata"]["name"]: sa for sa in by_kind(objects(helm_out, "all"), "ServiceAccount")}
    assert "eks.amazonaws.com/role-arn" in every["cpt-convert"]["metadata"]["annotations"]
    assert "iam.gke.io/gcp-service-account" in every["cpt-train"]["metadata"]["annotations"]
    assert every["cpt-train"]["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_configmap_holds_the_shipped_mix_and_defaults_the_plan_accepts(helm_out):
    (config,) = by_kind(objects(helm_out, "default"), "ConfigMap")
    shipped = ROOT / "cpt_tasks" / "mixes" / "dolmino-mix-1124.json"
    assert config["data"]["dolmino-mix-1124.json"] == shipped.read_text()
    shipped_mix = json.loads(config["data"]["dolmino-mix-1124.json"])
    assert load_mix("dolmino-mix-1124").proportions == shipped_mix["proportions"]
    params = json.loads(config["data"]["params.json"])
    plan = PlanConfig(out_root=params["storage_root"] or "s3://bucket/cpt", mix=params["mix"],
                      total_tokens=params["total_tokens"], concat_tokens=params["concat_tokens"],
                      val_fraction=params["val_fraction"], tokenizer=params["tokenizer"], seed=params["seed"])
    assert (plan.total_tokens, plan.concat_tokens, plan.val_fraction, plan.seed) == (50_000_000_000, 8192, 0.0002, 17)
    assert json.loads(config["data"]["gpu-tolerations.json"])[0]["key"] == "nvidia.com/gpu"
    dag_defaults = {name: spec["default"] for name, spec in param_schemas("s3://bucket/cpt").items()}
    assert {k: v for k, v in params.items() if k != "storage_root"} == {k: dag_defaults[k] for k in params
                                                                      if k != "storage_root"}


def test_optional_objects(helm_out):
    objs = objects(helm_out, "all")
    (namespace,) = by_kind(objs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (pvc,) = by_kind(objs, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == "cpt-cache"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    (quota,) = by_kind(objs, "ResourceQuota")
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "16"
    deny, nodes = sorted(by_kind(objs, "NetworkPolicy"), key=lambda o: o["metadata"]["name"])
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    # training pods may reach training pods (rendezvous, gloo/NCCL on any port), and nothing else changes
    assert nodes["metadata"]["name"].endswith("-train-nodes")
    assert nodes["spec"] == {"podSelector": {"matchLabels": NODE_LABEL}, "policyTypes": ["Ingress"],
                             "ingress": [{"from": [{"podSelector": {"matchLabels": NODE_LABEL}}]}]}
    (pod,) = by_kind(objs, "Pod")
    assert pod["spec"]["containers"][0]["image"].endswith("@sha256:" + "0123456789abcdef" * 4)


def test_training_nodes_service_is_headless_and_selects_the_node_pods(helm_out):
    from cpt_tasks.layout import TRAIN_NODE_LABEL
    from cpt_pipeline.settings import Deployment

    (service,) = by_kind(objects(helm_out, "default"), "Service")
    assert service["metadata"]["name"] == Deployment().train_subdomain  # the pods' subdomain
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == NODE_LABEL == {TRAIN_NODE_LABEL: "true"}
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP" and "ports" not in service["spec"]


def test_test_pod_runs_the_tasks_cli_as_the_convert_account(helm_out):
    (pod,) = by_kind(objects(helm_out, "default"), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["serviceAccountName"] == "cpt-convert"
    container = pod["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/cpt-pipeline/cpt-tasks:0.1.0"
    assert container["command"][:3] == ["cpt-tasks", "plan", "--dry-run"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_are_refused(helm_out, case):
    error = helm_out[case].get("render_error", "")
    assert BAD_VALUES[case][1] in error, error or "rendered although the values are wrong"


def test_notes_give_airflow_the_same_names(helm_out):
    notes = helm_out["default"]["notes"]
    for line in ("CPT_RUNNER=kubernetes", "CPT_NAMESPACE=cpt", "CPT_STORAGE_SECRET=cpt-object-storage",
                 "CPT_HF_SECRET=cpt-hf-token", "CPT_CACHE_PVC=\n",
                 "CPT_TASKS_IMAGE=ghcr.io/cpt-pipeline/cpt-tasks:0.1.0", "CPT_MLFLOW_SECRET=cpt-mlflow",
                 "CPT_MLFLOW_TRACKING_URI=\n"):
        assert line in notes, line
    assert "WARNING: pipeline.storageRoot is empty" in notes and "mlflow.trackingUri is empty" in notes
    for job, subdomain in (("default", "cpt-train-nodes"), ("one-node", "")):  # multi-node training's Service
        named = dict(line.strip().split("=", 1) for line in helm_out[job]["notes"].splitlines()
                     if line.strip().startswith("CPT_"))
        assert named["CPT_TRAIN_SUBDOMAIN"] == subdomain
    every = helm_out["all"]["notes"]
    assert "CPT_CACHE_PVC=cpt-cache\n" in every and "CPT_STORAGE_ROOT=s3://my-bucket/cpt" in every
    assert "CPT_MLFLOW_TRACKING_URI=http://mlflow.mlflow.svc:5000\n" in every
    assert "CPT_MLFLOW_UI_URL=https://mlflow.example.com\n" in every
