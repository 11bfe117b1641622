"""What the kubernetes runner would submit (``make pods``): every pod valid against the Kubernetes schema
(strict: no unknown fields), hardened, with GPUs, /dev/shm, scheduling and credentials as specified."""

from __future__ import annotations

import json
import os

import pytest

from cpt_tasks.layout import safe_run_id

from cpt_local.pods import load_dag, render_pods

K8S_VERSION = "1.33"
SUBSETS = ("dclm", "flan", "pes2o", "wiki", "stackexchange", "math")


@pytest.fixture(scope="module")
def pods(tmp_path_factory):
    import os

    os.environ["CPT_GPU_NODE_SELECTOR"] = json.dumps({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    os.environ["CPT_GPU_TOLERATIONS"] = json.dumps([{"key": "nvidia.com/gpu", "operator": "Exists",
                                                     "effect": "NoSchedule"}])
    try:
        return render_pods(load_dag())
    finally:
        del os.environ["CPT_GPU_NODE_SELECTOR"], os.environ["CPT_GPU_TOLERATIONS"]


def test_one_pod_per_step_and_subset(pods):
    assert sorted(pods) == sorted(["plan.yaml", "verify.yaml", "train.yaml", "evaluate.yaml",
                                   *(f"convert-{s}.yaml" for s in SUBSETS)])


def test_every_pod_is_valid_kubernetes(pods):
    import kubernetes_validate

    for name, manifest in pods.items():
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)  # raises on any schema error


def test_schema_validation_can_fail(pods):
    import kubernetes_validate

    broken = json.loads(json.dumps(pods["train.yaml"]))
    broken["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = {"count": 8}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_pods_are_hardened(pods):
    for name, pod in pods.items():
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False and not spec.get("hostNetwork"), name
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"], name
            assert ctx["readOnlyRootFilesystem"] is True and not ctx.get("privileged"), name
        assert not any("hostPath" in v for v in spec["volumes"]), name
        mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert {"/tmp", "/cache", "/airflow/xcom"} <= mounts, name  # the only writable places


def test_credentials_only_by_secret_reference(pods):
    for name, pod in pods.items():
        for env in pod["spec"]["containers"][0]["env"]:
            if any(word in env["name"] for word in ("KEY", "TOKEN", "SECRET", "PASSWORD")):
                assert "value" not in env and env["valueFrom"]["secretKeyRef"]["name"], (name, env)


def test_conversion_pods_are_cpu_only_with_param_resources(pods):
    for subset in SUBSETS:
        pod = pods[f"convert-{subset}.yaml"]
        container = pod["spec"]["containers"][0]
        resources = container["resources"]
        assert resources["requests"] == {"cpu": "8", "memory": "16Gi"}
        assert resources["limits"] == {"cpu": "8", "memory": "16Gi"} and "nvidia.com/gpu" not in resources["limits"]
        run = safe_run_id("manual__2026-01-01T00:00:00+00:00")
        assert run.startswith("manual__2026-01-01T00-00-00-00-00-")  # made safe, with a hash of the original
        assert container["args"][:2] == ["convert-subset", "--config"] and config_of(container["args"]) == {
            "plan": f"s3://cpt-pipeline/runs/cpt_dolmino/{run}/plan.json", "subset": subset,
            "already_complete_exit": 99}
        assert pod["metadata"]["labels"]["cpt-pipeline/subset"] == subset
        assert pod["spec"]["serviceAccountName"] == "cpt-convert" and not pod["spec"].get("tolerations")


def test_each_part_of_a_subset_in_parts_is_its_own_conversion_pod():
    from cpt_pipeline.steps import convert_kwargs
    from cpt_tasks.documents.plan_docs import PlanEntry

    common = dict(subset="dclm", plan="s3://b/plan.json", plan_fingerprint="-", fingerprint="-", out_root="-",
                  max_tokens=8192, val_tokens=0, dataset="d")
    part = convert_kwargs(PlanEntry(**common, part=2, parts=4).model_dump(mode="json"))
    assert config_of(part["arguments"]) == {"plan": "s3://b/plan.json", "subset": "dclm", "part": 2,
                                            "already_complete_exit": 99}
    assert part["labels"]["cpt-pipeline/subset"] == "dclm" and part["labels"]["cpt-pipeline/part"] == "2"
    whole = convert_kwargs(PlanEntry(**common).model_dump(mode="json"))
    assert "part" not in config_of(whole["arguments"]) and "cpt-pipeline/part" not in whole["labels"]


def test_training_pod_gets_gpus_shm_and_gpu_nodes(pods):
    pod = pods["train.yaml"]
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert "cpu" not in container["resources"]["limits"]
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert {"mountPath": "/dev/shm", "name": "dshm"} in container["volumeMounts"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["serviceAccountName"] == "cpt-train" and spec["terminationGracePeriodSeconds"] == 120
    config = config_of(container["args"])
    assert config["nprocs"] == 8 and config["run_id"] == "manual__2026-01-01T00:00:00+00:00"


def test_tracked_pods_get_the_store_the_airflow_context_and_credentials_by_reference(pods):
    for name in ("train.yaml", "evaluate.yaml"):
        env = {e["name"]: e for e in pods[name]["spec"]["containers"][0]["env"]}
        assert env["AIRFLOW_CTX_DAG_ID"]["value"] == "cpt_dolmino"
        assert env["AIRFLOW_CTX_DAG_RUN_ID"]["value"] == "manual__2026-01-01T00:00:00+00:00"
        assert env["AIRFLOW_CTX_TASK_ID"]["value"] == name.split(".")[0] and env["AIRFLOW_CTX_TRY_NUMBER"]["value"] == "1"
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "cpt-mlflow", "key": key, "optional": True}
        assert "MLFLOW_TRACKING_URI" not in env  # no store in this deployment: not tracked
    for name in ("plan.yaml", "verify.yaml", "convert-dclm.yaml"):
        assert not [e for e in pods[name]["spec"]["containers"][0]["env"] if "MLFLOW" in e["name"]], name


def test_the_tracking_store_reaches_the_tracked_pods(monkeypatch):
    monkeypatch.setenv("CPT_MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc:5000")
    monkeypatch.setenv("CPT_MLFLOW_UI_URL", "https://mlflow.example.com")
    pods = render_pods(load_dag())
    for name in ("train.yaml", "evaluate.yaml"):
        env = {e["name"]: e.get("value") for e in pods[name]["spec"]["containers"][0]["env"]}
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc:5000"
        assert env["CPT_MLFLOW_UI_URL"] == "https://mlflow.example.com"


def test_evaluation_pod_gets_one_gpu_when_training_had_gpus(pods):
    spec, container = pods["evaluate.yaml"]["spec"], pods["evaluate.yaml"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"] == pods["train.yaml"]["spec"]["nodeSelector"]
    assert spec["serviceAccountName"] == "cpt-train"
    args = container["args"]
    assert args[:2] == ["evaluate", "--config"] and len(args) == 3
    assert config_of(args) == {"report": "s3://cpt-pipeline/runs/cpt_dolmino/" + safe_run_id(
        "manual__2026-01-01T00:00:00+00:00") + "/verify-report.json", "icl_tasks": "default",
        "save_root": "s3://cpt-pipeline/checkpoints", "run_id": "manual__2026-01-01T00:00:00+00:00"}
    cpu = render_pods(load_dag(), {"gpus": 0})["evaluate.yaml"]["spec"]["containers"][0]
    assert cpu["resources"]["limits"]["nvidia.com/gpu"] == "0"


def test_params_reach_the_pods():
    dag = load_dag()
    pods = render_pods(dag, {"gpus": 2, "convert_cpu": 4, "convert_memory": "6Gi", "shm_size": "8Gi",
                             "subsets": ["dclm", "math"], "storage_root": "gs://bucket/cpt"})
    assert sorted(pods) == ["convert-dclm.yaml", "convert-math.yaml", "evaluate.yaml", "plan.yaml", "train.yaml",
                            "verify.yaml"]
    train = pods["train.yaml"]["spec"]
    assert train["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert next(v for v in train["volumes"] if v["name"] == "dshm")["emptyDir"]["sizeLimit"] == "8Gi"
    assert pods["convert-dclm.yaml"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "4"
    config = config_of(pods["plan.yaml"]["spec"]["containers"][0]["args"])
    assert config["out_root"] == "gs://bucket/cpt/data" and config["num_workers"] == 4
    assert config["subsets"] == ["dclm", "math"] and config["allow_short"] is False


def config_of(args: list[str]) -> dict:
    """The JSON object a container passes its job as ``--config`` (the one way a step passes its options)."""
    return json.loads(args[args.index("--config") + 1])


JOB_K8S_VERSIONS = ("1.30", "1.37")  # the chart's kubeVersion floor (podFailurePolicy beta, on) and the newest


@pytest.fixture(scope="module")
def job():
    """`make pods CONF='{"nodes": 2, "gpus": 8}'`: the training step as an Indexed Job."""
    import os

    os.environ["CPT_GPU_NODE_SELECTOR"] = json.dumps({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    try:
        rendered = render_pods(load_dag(), {"nodes": 2, "gpus": 8})
    finally:
        del os.environ["CPT_GPU_NODE_SELECTOR"]
    assert "train.yaml" not in rendered and len(rendered) == 10  # plan, six conversions, verify, the Job, evaluate
    assert "evaluate.yaml" in rendered
    return rendered["train-job.yaml"]


def test_the_training_job_is_valid_kubernetes(job):
    import kubernetes_validate

    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    for version in JOB_K8S_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    broken = json.loads(json.dumps(job))
    broken["spec"]["podFailurePolicy"]["rules"][0]["onExitCode"] = broken["spec"]["podFailurePolicy"]["rules"][0].pop(
        "onExitCodes")  # a misspelt field: strict validation must see it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, JOB_K8S_VERSIONS[-1], strict=True)


def test_the_training_job_runs_every_node_together_and_fails_as_one(job):
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 7 * 24 * 3600
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": "base", "operator": "In",
                                                              "values": [2, 3]}}
    assert rules[1] == {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["subdomain"] == "cpt-train-nodes"
    assert spec["template"]["metadata"]["labels"]["cpt-pipeline/train-node"] == "true"
    assert job["metadata"]["name"].startswith("job-cpt-train") and len(job["metadata"]["name"]) <= 55


def test_every_node_pod_is_the_training_pod_with_its_rank(job):
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]  # no XCom sidecar: a failed node's pod must turn Failed at once
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8" and "cpu" not in container["resources"]["limits"]
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert {"mountPath": "/dev/shm", "name": "dshm"} in container["volumeMounts"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["serviceAccountName"] == "cpt-train" and pod["terminationGracePeriodSeconds"] == 120
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    args = container["args"]
    assert config_of(args)["nprocs"] == 8 and args[:2] == ["train", "--config"]
    assert args[-8:] == ["--nnodes", "2", "--node_rank", "$(JOB_COMPLETION_INDEX)",
                         "--master_addr", "$(CPT_JOB_NAME)-0.cpt-train-nodes", "--master_port", "29500"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CPT_RESULT_FILE"]["value"] == "/dev/termination-log"
    assert env["CPT_JOB_NAME"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}
    assert all("value" not in env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN"))


def test_one_node_keeps_the_single_training_pod(pods):
    args = pods["train.yaml"]["spec"]["containers"][0]["args"]
    assert "--nnodes" not in args and "subdomain" not in pods["train.yaml"]["spec"]


# The reference table (shared/DESIGN.md, from the reference notes): subset -> (max_tokens, val_tokens) of the
# default 50e9-token plan.
REFERENCE_TABLE = {"dclm": (23_600_000_000, 4_720_000), "flan": (8_300_000_000, 1_660_000),
                   "pes2o": (2_925_000_000, 585_000), "wiki": (3_555_000_000, 711_000),
                   "stackexchange": (1_225_000_000, 245_000), "math": (10_400_000_000, 2_080_000)}


def _run_plan(args: list[str], output) -> dict:
    """``cpt-tasks plan ARGS`` in the tasks env (the plan pod's CLI); the written plan."""
    import subprocess

    from cpt_pipeline.settings import Deployment

    proc = subprocess.run([Deployment().tasks_bin, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(output.read_text())


def test_the_default_plan_pod_gives_the_reference_table_and_the_by_hand_fingerprints(pods, tmp_path):
    """The plan pod's own arguments (every default Param, the proportions and all six subsets in --config) give
    the reference table exactly (an unchanged mix is not renormalized), and the same subsets' fingerprints as
    the plain by-hand command over the same source and tokenizer."""
    from conftest import cpt_home

    home = cpt_home()
    local = {"--dataset": str(home / "sample" / "dolmino"), "--tokenizer": str(home / "tokenizer" / "llama3"),
             "--out_root": str(tmp_path / "data"), "--output": str(tmp_path / "pod-plan.json")}
    args = list(pods["plan.yaml"]["spec"]["containers"][0]["args"])
    config = config_of(args)
    assert args[:2] == ["plan", "--config"] and config["subsets"] == list(SUBSETS)
    for flag, value in local.items():  # the hub ids cannot be reached here: the same files, local
        config[flag.removeprefix("--")] = value
    by_pod = _run_plan(["plan", "--config", json.dumps(config)], tmp_path / "pod-plan.json")
    assert not by_pod["mix"]["renormalized"]
    assert {s["name"]: (s["convert"]["max_tokens"], s["convert"]["val_tokens"])
            for s in by_pod["subsets"]} == REFERENCE_TABLE
    by_hand = _run_plan(["plan", *[x for kv in {**local, "--output": str(tmp_path / "hand.json")}.items()
                                   for x in kv]], tmp_path / "hand.json")
    assert [(s["name"], s["fingerprint"]) for s in by_hand["subsets"]] == \
           [(s["name"], s["fingerprint"]) for s in by_pod["subsets"]]
