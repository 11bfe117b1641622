"""The podman runner (``CPT_RUNNER=podman``): it builds exactly the kubernetes runner's pods and changes only
what its module docstring lists; marked ``images``, it runs real pods in the tasks image (``make test-images``)
and applies the one exit-status policy: 0 result -> XCom and pod removed, 2/3 final, 99 skipped, others
retried, failed pods kept."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from cpt_pipeline.podman_runner import PodmanStepOperator, adapt_pod, host_mounts
from cpt_local.pods import load_dag, render_pods
from cpt_pipeline.runners import pod_options
from cpt_pipeline.settings import Deployment
from cpt_pipeline.steps import Step
from cpt_tasks.jobs import Pod

SUBSETS = ("dclm", "flan", "pes2o", "wiki", "stackexchange", "math")
LOCAL = {"storage_root": "/data/cpt", "dataset": "/data/sample", "tokenizer": "/models/tok",
         "model": "/models/tiny", "gpus": 0}


def without_random_names(pods: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for name, pod in pods.items():
        pod = json.loads(json.dumps(pod))
        pod["metadata"]["name"] = pod["metadata"]["name"].rsplit("-", 1)[0]
        out[name] = pod
    return out


@pytest.fixture(scope="module")
def kube_pods():
    return render_pods(load_dag(), LOCAL)


def test_podman_runner_builds_the_kubernetes_runners_pods(kube_pods):
    podman = render_pods(load_dag(runner="podman"), LOCAL)
    assert type(load_dag(runner="podman").get_task("plan")).__name__ == "PodmanStepOperator"
    assert without_random_names(podman) == without_random_names(kube_pods)


def test_local_params_become_host_mounts():
    assert host_mounts(LOCAL) == [("/data/cpt", False), ("/data/sample", True), ("/models/tiny", True),
                                  ("/models/tok", True)]
    assert host_mounts({"storage_root": "s3://bucket/cpt", "dataset": "allenai/dolmino-mix-1124",
                        "tokenizer": "meta-llama/Llama-3.1-8B", "model": ""}) == []
    assert host_mounts({"storage_root": "/d/x/", "dataset": "/d/x"}) == [("/d/x", False)]  # one mount, writable


def test_adaptations_change_only_what_podman_needs(kube_pods):
    for name, pod in kube_pods.items():
        adapted, changes = adapt_pod(pod, xcom_dir="/run/xcom/p", mounts=host_mounts(LOCAL))
        spec, original = adapted["spec"], pod["spec"]
        (container,) = spec["containers"]
        base = original["containers"][0]
        assert [c["name"] for c in original["containers"]] == ["base", "airflow-xcom-sidecar"]
        assert container["name"] == "base" and "sidecar" in changes[0]
        for key in ("image", "command", "args", "resources", "securityContext", "imagePullPolicy"):
            assert container[key] == base[key], (name, key)
        for key in ("securityContext", "restartPolicy", "automountServiceAccountToken", "serviceAccountName"):
            assert spec[key] == original[key], (name, key)
        assert adapted["metadata"] == pod["metadata"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["xcom"] == {"name": "xcom", "hostPath": {"path": "/run/xcom/p", "type": "Directory"}}
        assert volumes["tmp"] == next(v for v in original["volumes"] if v["name"] == "tmp")
        assert volumes["cache"] == next(v for v in original["volumes"] if v["name"] == "cache")
        assert "dshm" not in volumes and "/dev/shm" not in {m["mountPath"] for m in container["volumeMounts"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert {"/tmp", "/cache", "/airflow/xcom", "/data/cpt", "/data/sample", "/models/tok", "/models/tiny"} \
            == set(mounts)
        assert not mounts["/data/cpt"].get("readOnly") and mounts["/models/tok"]["readOnly"] is True
        assert volumes[mounts["/data/sample"]["name"]]["hostPath"] == {"path": "/data/sample", "type": "Directory"}
        plain = [e for e in base["env"] if "valueFrom" not in e]
        assert container["env"] == plain and len(plain) < len(base["env"])
        dropped = [c for c in changes if c.startswith("dropped env")]
        tracked = name in ("train.yaml", "evaluate.yaml")  # + the MLflow credentials' three optional refs
        assert len(dropped) == len(base["env"]) - len(plain) == 4 + 3 * tracked
        assert len(changes) == 2 + tracked + len(dropped) + 4


def test_a_required_secret_is_refused(kube_pods):
    pod = json.loads(json.dumps(kube_pods["plan.yaml"]))
    pod["spec"]["containers"][0]["env"][-1]["valueFrom"]["secretKeyRef"]["optional"] = False
    with pytest.raises(ValueError, match="HF_TOKEN needs Secret 'cpt-hf-token'"):
        adapt_pod(pod, xcom_dir="/x", mounts=[])


# --- real pods (make test-images) ---------------------------------------------------------------------------

IMAGE = os.environ.get("CPT_TASKS_IMAGE", "localhost/cpt-tasks:dev")


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True)


@pytest.fixture
def run_pod(tmp_path):
    """run_pod(script, **params) -> (operator, result or exception): ``sh -c script`` as a plan pod."""

    def run(script: str, task_id: str = "plan"):
        deployment = Deployment(runner="podman", image=IMAGE, podman_dir=str(tmp_path / "podman"))
        options = pod_options(Step(task_id, [], Pod("cpu", cpu="1", memory="1Gi")), deployment)
        options.update(cmds=["sh", "-c"], arguments=[script], podman_dir=deployment.podman_dir)
        op = PodmanStepOperator(task_id=task_id, **options)
        ti = SimpleNamespace(dag_id="cpt_test", task_id=task_id, run_id="manual__t", map_index=-1, try_number=1,
                             xcom_pull=lambda task_ids: None)
        params = {"storage_root": str(tmp_path / "store"), "dataset": str(tmp_path / "input")}
        (tmp_path / "input").mkdir(exist_ok=True)
        (tmp_path / "input" / "doc.txt").write_text("read me")
        context = {"params": params, "ti": ti, "task_instance": ti, "run_id": "manual__t", "outlet_events": {},
                   "dag": SimpleNamespace(dag_id="cpt_test")}
        try:
            return op, op.execute(context)
        except AirflowException as exc:
            return op, exc

    return run


def pods_of(op) -> list[str]:
    return [p.stem for p in (Path(op.podman_dir) / "pods").glob("*.yaml")]


@pytest.mark.images
def test_a_pod_runs_under_the_security_context_and_returns_its_result(run_pod, tmp_path, capfd):
    script = ('id -u; cat "$0"/doc.txt; touch /root-fs 2>/dev/null && echo ROOTFS-WRITABLE; '
              'touch "$0"/x 2>/dev/null && echo INPUT-WRITABLE; echo out > "$1"/written; '
              'echo \'{"ok": true, "n": 3}\' > "$CPT_RESULT_FILE"')
    script = script.replace('"$0"', str(tmp_path / "input")).replace('"$1"', str(tmp_path / "store"))
    op, result = run_pod(script)
    assert result == {"ok": True, "n": 3}
    assert (tmp_path / "store" / "written").read_text() == "out\n"
    log = capfd.readouterr().out  # the task log: the container's lines, streamed
    assert re.search(r"\] 1000\s", log) and re.search(r"\] read me\s", log), log[-3000:]
    assert "ROOTFS-WRITABLE" not in log and "INPUT-WRITABLE" not in log
    (name,) = pods_of(op)
    assert podman("pod", "exists", name).returncode == 1  # removed on success
    manifest = (Path(op.podman_dir) / "pods" / f"{name}.yaml").read_text()
    assert "# Submitted by the cpt-pipeline podman runner" in manifest and "airflow-xcom-sidecar" not in manifest.split("\n", 8)[-1]


@pytest.mark.images
@pytest.mark.parametrize(("status", "error", "kept"), [(2, AirflowFailException, True), (3, AirflowFailException, True),
                                                       (99, AirflowSkipException, False), (1, AirflowException, True)])
def test_exit_statuses_and_what_is_kept(run_pod, status, error, kept):
    op, outcome = run_pod(f"echo failing with {status}; exit {status}")
    assert isinstance(outcome, error), outcome
    if error is AirflowException:
        assert not isinstance(outcome, (AirflowFailException, AirflowSkipException))
    (name,) = pods_of(op)
    try:
        assert (podman("pod", "exists", name).returncode == 0) == kept
        if kept:
            logs = podman("logs", f"{name}-base").stdout
            assert f"failing with {status}" in logs
    finally:
        podman("pod", "rm", "--force", name)


@pytest.mark.images
def test_on_kill_removes_the_running_pod(run_pod):
    holder = {}

    def run():
        holder["op"], holder["outcome"] = run_pod("echo started; sleep 300")

    ops: list = []
    original = PodmanStepOperator._follow

    def follow(self, container):
        ops.append(self)
        return original(self, container)

    PodmanStepOperator._follow = follow
    try:
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not ops and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ops, "the pod never started"
        op = ops[0]
        name = op._pod_name
        assert podman("pod", "exists", name).returncode == 0
        op.termination_grace_period = 1
        op.on_kill()
        thread.join(60)
        assert not thread.is_alive()
        assert podman("pod", "exists", name).returncode == 1
    finally:
        PodmanStepOperator._follow = original


@pytest.mark.images
@pytest.mark.timeout(1800)
def test_a_second_demo_pods_converts_nothing():
    """After `make demo-pods` (make test-images runs it first): the same run again skips the six conversions as up
    to date and training as already done, with every pod a real pod again (plan and verify run, and are removed)."""
    from conftest import cpt_home

    from cpt_local.demo import task_states

    home = cpt_home().resolve()
    if not (home / "demo-pods" / "runs").is_dir():
        pytest.fail(f"{home / 'demo-pods'} has no run: `make demo-pods` first (make test-images does)")
    before = set((home / "demo-pods" / "pods").glob("*.yaml"))
    proc = subprocess.run([sys.executable, "-m", "cpt_local.demo", "--runner", "podman", "--image", IMAGE],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    run_id = re.findall(r"^Run (\S+)$", proc.stdout, re.M)[-1]
    states = {s["task_id"] + (f"[{s['label']}]" if s["map_index"] >= 0 else ""): s["state"]
              for s in task_states(home / "airflow-pods", run_id)}
    assert states == {"plan": "success", "verify": "success", "train": "skipped", "evaluate": "skipped",
                      **{f"convert[{s}]": "skipped" for s in SUBSETS}}
    submitted = set((home / "demo-pods" / "pods").glob("*.yaml")) - before
    assert sorted(p.name.rsplit("-", 1)[0] for p in submitted) == ["cpt-convert"] * 6 + ["cpt-plan", "cpt-verify"]
    assert not [p for p in podman("pod", "ls", "--format", "{{.Name}}").stdout.split() if p in
                {s.stem for s in submitted}]  # already complete (99) and success: every pod removed
    # The first run's train and evaluate pods tracked into the file store under the (hostPath) storage root.
    store = home / "demo-pods" / "mlflow"
    assert f"MLflow runs (make mlflow MLFLOW_STORE={store}, then open):" in proc.stdout
    links = dict(re.findall(r"^  (train|evaluate) +http://\S+/#/experiments/\d+/runs/(\w+)", proc.stdout, re.M))
    assert set(links) == {"train", "evaluate"}, proc.stdout[-3000:]
    for step, run_id in links.items():
        (meta,) = store.glob(f"*/{run_id}/meta.yaml")
        assert yaml.safe_load(meta.read_text())["status"] == 3, (step, meta)  # RunStatus.FINISHED
        assert (meta.parent / "metrics").is_dir() and any((meta.parent / "metrics").rglob("*")), step
