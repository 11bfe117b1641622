"""The Kubernetes runner against a Kubernetes API server on 127.0.0.1 (tests/dags/kube_api.py), reached through the
operators' own hook and client: a conversion pod's exit statuses (its operator made as the DAG makes it, so with
the production ``skip_on_exit_code``; the provider's own cleanup decides), and the multi-node training Job
(created as an Indexed Job, its pods awaited, deferred; node 0's result; no retry when a node exited 2 or 3)."""

from __future__ import annotations

import json
from collections import defaultdict
from types import SimpleNamespace

import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException, TaskDeferred
from kubernetes.client import models as k8s
from kube_api import KubeApi

import cpt_pipeline.indexed_job as train_job
from cpt_tasks.documents.train_docs import TrainResult
from cpt_tasks.errors import EXIT_ALREADY_COMPLETE, EXIT_CHECK_FAILED, EXIT_FAILED, EXIT_USER_ERROR
from cpt_pipeline.operators import StepPodOperator
from cpt_pipeline.runners import make_operator
from cpt_pipeline.settings import Deployment
from cpt_pipeline.steps import Step, step
from cpt_pipeline.indexed_job import StepTrainOperator


def finished_pod(name: str, exit_code: int, message: str | None = None, index: int | None = None) -> k8s.V1Pod:
    """A pod whose ``base`` container ended with ``exit_code`` (and ``message``); with ``index``, a pod of a
    training Job (its completion index)."""
    state = k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code, message=message))
    status = k8s.V1PodStatus(phase="Failed" if exit_code else "Succeeded", container_statuses=[
        k8s.V1ContainerStatus(name="base", state=state, image="i", image_id="", ready=False, restart_count=0)])
    meta = k8s.V1ObjectMeta(name=name, namespace="cpt", labels={})
    if index is not None:
        meta.annotations = {"batch.kubernetes.io/job-completion-index": str(index)}
        meta.labels["batch.kubernetes.io/job-name"] = "not-created-yet"  # the Job's name once it is created
    return k8s.V1Pod(metadata=meta, spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base", image="i")]),
                     status=status)


def node_pod(index: int, exit_code: int, message: str | None = None) -> k8s.V1Pod:
    return finished_pod(f"job-cpt-train-x-{index}-abcde", exit_code, message, index)


@pytest.fixture
def kube(tmp_path):
    """kube(pods) -> (the API server holding ``pods``, its kube config file)."""
    servers = []

    def start(pods: list[k8s.V1Pod]) -> tuple[KubeApi, str]:
        servers.append(KubeApi(pods))
        return servers[-1], servers[-1].kube_config(tmp_path)

    yield start
    for server in servers:
        server.stop()


def task_context(params: dict | None = None) -> dict:
    """What the operators read from the task's context (the XComs pushed are kept in ``ti.pushed``)."""
    pushed = {}
    ti = SimpleNamespace(dag_id="cpt_dolmino", task_id="train", run_id="r", map_index=-1, try_number=1,
                         xcom_pull=lambda task_ids: None, xcom_push=lambda key, value: pushed.update({key: value}), pushed=pushed)
    return {"params": params or {}, "ti": ti, "run_id": "r", "dag": SimpleNamespace(dag_id="cpt_dolmino"),
            "outlet_events": defaultdict(lambda: SimpleNamespace(extra={}))}


def production_pod_operator(step: Step, config: str):
    """``step``'s operator as the DAG makes it under the kubernetes runner (``make_operator``: every option,
    ``skip_on_exit_code`` included, from ``pod_options``), only pointed at the test's API server."""
    return make_operator(step, Deployment(runner="kubernetes"), config_file=config, in_cluster=False)


@pytest.mark.parametrize("task_id", ["plan", "convert", "verify"])
def test_production_cpu_pods_skip_when_the_work_was_already_complete(task_id):
    op = production_pod_operator(step(task_id), "unused")
    assert isinstance(op, StepPodOperator) and list(op.skip_on_exit_code) == [EXIT_ALREADY_COMPLETE]


@pytest.mark.parametrize(("status", "error"), [(EXIT_USER_ERROR, AirflowFailException),
                                               (EXIT_CHECK_FAILED, AirflowFailException),
                                               (EXIT_ALREADY_COMPLETE, AirflowSkipException),
                                               (EXIT_FAILED, AirflowException)])
def test_pod_runner_exit_statuses(kube, status, error):
    """The provider's own cleanup() reads the finished pod from the API server and decides."""
    pod = finished_pod("cpt-convert-x", status)
    api, config = kube([pod])
    op = production_pod_operator(step("convert"), config)
    with pytest.raises(error) as raised:
        op.cleanup(pod, pod)
    if error is AirflowException:
        assert not isinstance(raised.value, (AirflowFailException, AirflowSkipException))
    assert "GET /api/v1/namespaces/cpt/pods/cpt-convert-x" in api.log  # it asked the server, not the argument


def train_operator(config: str, **kwargs) -> StepTrainOperator:
    options = dict(task_id="train", name="cpt-train", namespace="cpt", image="i", arguments=["train"], nodes="2",
                   node_subdomain="cpt-train-nodes", get_logs=False, on_finish_action="keep_pod",
                   outlets=[Asset(name="cpt_dolmino/checkpoint")], wiring=step("train").wiring,
                   config_file=config, in_cluster=False)
    return StepTrainOperator(**{**options, **kwargs})


def job_event(status: str, names: list[str]) -> dict:
    return {"status": status, "message": "Job has failed" if status == "error" else "Job completed",
            "job": {"metadata": {"name": "job-cpt-train-x", "namespace": "cpt"}}, "pod_names": names,
            "pod_namespace": "cpt"}


def test_training_job_is_created_waits_for_its_pods_and_defers(kube, monkeypatch):
    monkeypatch.setattr(train_job, "PODS_POLL", 0.01)
    api, config = kube([node_pod(1, 0), node_pod(0, 0)])
    op = train_operator(config)
    ctx = task_context({"train": "always"})
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    assert deferred.value.method_name == "execute_complete"
    assert api.lists == 2  # the second pod came one poll later: no "No pods running" (apache/airflow#70585)
    (job,) = api.jobs
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == \
        ("Indexed", 2, 2, 0)
    assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2, 3]
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "cpt-train-nodes"
    assert pod["containers"][0]["args"][-8:] == ["--nnodes", "2", "--node_rank", "$(JOB_COMPLETION_INDEX)",
                                                 "--master_addr", "$(CPT_JOB_NAME)-0.cpt-train-nodes",
                                                 "--master_port", str(train_job.MASTER_PORT)]
    assert len(pod["containers"]) == 1  # no XCom sidecar: node 0's termination message is the result
    assert ctx["ti"].pushed["job_name"] == job["metadata"]["name"]
    assert deferred.value.trigger.pod_names == ["job-cpt-train-x-0-abcde", "job-cpt-train-x-1-abcde"]


def test_training_job_whose_pods_never_come_is_deleted_and_retried(kube, monkeypatch):
    monkeypatch.setattr(train_job, "PODS_POLL", 0.01)
    monkeypatch.setattr(train_job, "PODS_WAIT", 0.1)
    api, config = kube([])
    op = train_operator(config)
    with pytest.raises(AirflowException, match="0 of 2 pods") as raised:
        op.execute(task_context({"train": "always"}))
    assert not isinstance(raised.value, AirflowFailException)
    assert api.deleted == [("job", api.jobs[0]["metadata"]["name"])]


def test_finished_training_job_returns_node_0s_termination_message(kube):
    result = TrainResult(status="trained", run_name="y", run_folder="/c/y", checkpoint="/c/y/checkpoints/ep0-ba4",
                         hf_export="/c/y/hf", run_manifest="/c/y/run-manifest.json", plan_fingerprint="f" * 64,
                         final_step=4, train_tokens=4096).model_dump(mode="json")
    other = dict(result, status="node_done")
    pods = [node_pod(1, 0, json.dumps(other)), node_pod(0, 0, json.dumps(result))]
    api, config = kube(pods)
    op = train_operator(config)
    ctx = task_context()
    assert op.execute_complete(ctx, job_event("success", [p.metadata.name for p in pods])) == result
    assert ctx["outlet_events"][op.outlets[0]].extra["checkpoint"] == "/c/y/checkpoints/ep0-ba4"
    assert sorted(name for name, _ in api.patched) == sorted(p.metadata.name for p in pods)  # marked checked


@pytest.mark.parametrize(("codes", "error"), [((1, 2), AirflowFailException), ((3, 137), AirflowFailException),
                                              ((1, 137), AirflowException)])
def test_failed_training_job_retries_unless_a_node_exited_2_or_3(kube, codes, error):
    pods = [node_pod(0, codes[0]), node_pod(1, codes[1])]
    _, config = kube(pods)
    op = train_operator(config)
    with pytest.raises(error) as raised:
        op.execute_complete(task_context(), job_event("error", [p.metadata.name for p in pods]))
    if error is AirflowException:
        assert not isinstance(raised.value, (AirflowFailException, AirflowSkipException))
    else:
        assert "node " in str(raised.value) and "not retrying" in str(raised.value)


def test_multi_node_training_needs_the_charts_service(kube):
    api, config = kube([])
    op = train_operator(config, node_subdomain="")
    with pytest.raises(AirflowFailException, match="CPT_TRAIN_SUBDOMAIN is empty"):
        op.execute(task_context({"train": "always"}))
    assert api.jobs == []
