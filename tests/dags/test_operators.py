"""Both runners apply one exit-status policy: 0 done (result -> XCom, asset metadata), 2 and 3 final
(no retry), 99 skipped (up to date), anything else retried; the training and evaluation gates; the evaluation's
Asset metadata and lineage; the "MLflow run" link."""

from __future__ import annotations

import json
import stat
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from cpt_tasks.documents.evaluate import EvaluateResult
from cpt_tasks.documents.train import FinishedRun, MlflowRun, TrainResult
from cpt_tasks.documents.verify import SubsetSummary, VerifySummary
from cpt_tasks.pipeline.operators import LocalStepOperator, MlflowRunLink, StepPodOperator, mlflow_run_url
from cpt_tasks.pipeline.steps import evaluate_gate, train_gate


def fake_cli(tmp_path: Path, status: int, result: dict | None = None) -> str:
    """A stand-in for the tasks env's `cpt-tasks`: writes ``result`` to $CPT_RESULT_FILE, exits ``status``."""
    script = tmp_path / "cpt-tasks"
    body = "echo 'argv:' \"$@\"\necho progress line\n"
    if result is not None:
        body += f"cat > \"$CPT_RESULT_FILE\" <<'JSON'\n{json.dumps(result)}\nJSON\n"
    script.write_text(f"#!/bin/sh\n{body}exit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def context(params: dict | None = None, verified: dict | None = None) -> dict:
    events = defaultdict(lambda: SimpleNamespace(extra={}))
    ti = SimpleNamespace(xcom_pull=lambda task_ids: verified)
    return {"params": params or {}, "ti": ti, "outlet_events": events}


@pytest.mark.parametrize(("status", "error"), [(2, AirflowFailException), (3, AirflowFailException),
                                               (99, AirflowSkipException), (1, AirflowException),
                                               (137, AirflowException)])
def test_local_runner_exit_statuses(tmp_path, status, error):
    op = LocalStepOperator(task_id="convert", arguments=["convert-subset"], tasks_bin=fake_cli(tmp_path, status))
    with pytest.raises(error) as raised:
        op.execute(context())
    if error is AirflowException:  # transient: must stay retryable, i.e. not the final kinds
        assert not isinstance(raised.value, (AirflowFailException, AirflowSkipException))


def verify_result(finished: FinishedRun | None = None) -> dict:
    """The verify step's result document as its XCom holds it."""
    return VerifySummary(
        ok=True, report="/r/verify-report.json", report_md="/r/verify-report.md", plan="/r/plan.json",
        plan_fingerprint="f" * 64, realized_train_tokens=512, finished_training=finished,
        subsets={"dclm": SubsetSummary(status="ok", fingerprint="a" * 64, out_root="/d/dclm",
                                       manifest="/d/dclm/manifest.json", train_tokens=512, val_tokens=256,
                                       proportion=1.0)}).model_dump(mode="json")


def finished_run(folder: str) -> FinishedRun:
    return FinishedRun(run_name="n", run_folder=folder, run_manifest=f"{folder}/run-manifest.json",
                       plan_fingerprint="abc", final_step=1, train_tokens=1, checkpoint=None, hf_export=f"{folder}/hf",
                       finished_at="now")


def test_local_runner_returns_the_result_and_sets_asset_metadata(tmp_path):
    result = verify_result()
    asset = Asset(name="cpt_dolmino/dclm")
    op = LocalStepOperator(task_id="verify", arguments=["verify", "--plan", "p"], outlets=[asset],
                           tasks_bin=fake_cli(tmp_path, 0, result))
    ctx = context()
    assert op.execute(ctx) == result
    assert ctx["outlet_events"][asset].extra == {
        "fingerprint": "a" * 64, "location": "/d/dclm", "manifest": "/d/dclm/manifest.json", "train_tokens": 512,
        "val_tokens": 256, "plan_fingerprint": "f" * 64, "report": "/r/verify-report.json"}
    lineage = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", "/d/dclm")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", "/r/verify-report.json")]


@pytest.mark.parametrize(("policy", "finished", "skipped"), [
    ("never", None, True), ("always", "/c/x", False), ("if_changed", None, False), ("if_changed", "/c/x", True)])
def test_training_gate(tmp_path, policy, finished, skipped):
    verified = verify_result(finished_run(finished) if finished else None)
    assert (train_gate({"train": policy}, verified) is not None) == skipped
    trained = trained_result()
    op = LocalStepOperator(task_id="train", arguments=["train"], gate=train_gate,
                           tasks_bin=fake_cli(tmp_path, 0, trained))
    if skipped:
        with pytest.raises(AirflowSkipException, match="train skipped: "):
            op.execute(context({"train": policy}, verified))
    else:
        assert op.execute(context({"train": policy}, verified)) == trained


def trained_result() -> dict:
    return TrainResult(status="trained", run_name="y", run_folder="/c/y", checkpoint=None, hf_export="/c/y/hf",
                       run_manifest="/c/y/run-manifest.json", plan_fingerprint="f" * 64, final_step=1,
                       train_tokens=1).model_dump(mode="json")


URL = "http://127.0.0.1:5000/#/experiments/7/runs/" + "a" * 32


def evaluated_result() -> dict:
    return EvaluateResult(
        status="evaluated", report="s3://b/c/y/eval/e/eval-report.json", report_md="s3://b/c/y/eval/e/eval-report.md",
        report_png="s3://b/c/y/eval/e/eval.png", eval_fingerprint="e" * 64, plan_fingerprint="f" * 64,
        run_folder="s3://b/c/y", hf_export="s3://b/c/y/hf", val_splits=["s3://b/d/dclm/val"],
        task_files=["s3://b/t/tasks.yaml", "s3://b/t/lm.jsonl", "hf://datasets/x"],
        headline={"subsets": 1, "subsets_better": 1},
        mlflow=MlflowRun(status="tracked", experiment_id="7", run_id="a" * 32, run_url=URL)).model_dump(mode="json")


@pytest.mark.parametrize(("policy", "trained", "skipped"), [
    ("never", True, True), ("always", False, False), ("if_trained", True, False), ("if_trained", False, True)])
def test_evaluation_gate_reads_the_training_result(tmp_path, policy, trained, skipped):
    upstream = trained_result() if trained else None  # None: training was skipped (no XCom)
    assert (evaluate_gate({"evaluate": policy}, upstream) is not None) == skipped
    asset = Asset(name="cpt_dolmino/eval")
    op = LocalStepOperator(task_id="evaluate", arguments=["evaluate"], gate=evaluate_gate, outlets=[asset],
                           tasks_bin=fake_cli(tmp_path, 0, evaluated_result()))
    ctx = context({"evaluate": policy}, upstream)
    if skipped:
        with pytest.raises(AirflowSkipException, match="evaluate skipped: "):
            op.execute(ctx)
        return
    assert op.execute(ctx) == evaluated_result()
    extra = ctx["outlet_events"][asset].extra
    assert extra["report"] == "s3://b/c/y/eval/e/eval-report.json" and extra["subsets_better"] == 1
    lineage = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("s3://b", "c/y/hf"), ("s3://b", "d/dclm/val"), ("s3://b", "t/tasks.yaml"), ("s3://b", "t/lm.jsonl")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://b", "c/y/eval/e/eval-report.json")]


def test_the_mlflow_link_is_the_run_page_the_result_names():
    assert mlflow_run_url(evaluated_result()) == URL
    untracked = {**trained_result(), "mlflow": MlflowRun(status="unreachable", error="down").model_dump()}
    assert mlflow_run_url(untracked) == mlflow_run_url(trained_result()) == mlflow_run_url(None) == ""
    assert MlflowRunLink().name == "MLflow run" and MlflowRunLink().xcom_key == "_link_MlflowRunLink"


def finished_pod(exit_code: int):
    from kubernetes.client import models as k8s

    state = k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code))
    status = k8s.V1PodStatus(phase="Failed" if exit_code else "Succeeded", container_statuses=[
        k8s.V1ContainerStatus(name="base", state=state, image="i", image_id="", ready=False, restart_count=0)])
    spec = k8s.V1PodSpec(containers=[k8s.V1Container(name="base", image="i")])
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="cpt-convert-x", namespace="cpt"), spec=spec, status=status)


class FakeCoreV1:
    """The two Kubernetes API calls cleanup() makes for a finished pod: read it, and label it as checked."""

    def __init__(self, pod) -> None:
        self.pod, self.patched = pod, []

    def read_namespaced_pod(self, name, namespace, **kwargs):
        assert (name, namespace) == (self.pod.metadata.name, self.pod.metadata.namespace)
        return self.pod

    def patch_namespaced_pod(self, name, namespace, body, **kwargs):
        self.patched.append(body)
        return self.pod


@pytest.mark.parametrize(("status", "error"), [(2, AirflowFailException), (3, AirflowFailException),
                                               (99, AirflowSkipException), (1, AirflowException)])
def test_pod_runner_exit_statuses(status, error):
    """The provider's own cleanup() decides on the finished pod; no cluster is needed to reach that point."""
    op = StepPodOperator(task_id="convert", name="cpt-convert", namespace="cpt", image="i", skip_on_exit_code=99,
                         on_finish_action="delete_succeeded_pod", do_xcom_push=False)
    pod = finished_pod(status)
    op.__dict__["client"] = FakeCoreV1(pod)  # the Kubernetes API: the one thing faked
    op.__dict__.pop("pod_manager", None)
    with pytest.raises(error) as raised:
        op.cleanup(pod, pod)
    if error is AirflowException:
        assert not isinstance(raised.value, (AirflowFailException, AirflowSkipException))
