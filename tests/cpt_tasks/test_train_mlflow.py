"""Experiment tracking never fails a step: the shared training run was given a tracking server that is down and
trained anyway, killed and resumed (one warning per attempt, the manifest says unreachable); the pre-flight gives
up in seconds; Composer's logger (``cpt_mlflow``) turns an outage into one warning; a retry finds its run again by
name. A tracking server that answers is exercised end to end by the DAG's run (tests/dags/test_dag_run.py)."""

from __future__ import annotations

import contextlib
import os

import pytest

from cpt_tasks.documents import read_document
from cpt_tasks.documents.train_docs import MlflowRun, RunManifest
from cpt_tasks.tracking.mlflow_store import connect, run_url, without_credentials

pytestmark = [pytest.mark.slow, pytest.mark.llmfoundry]


def test_training_goes_on_when_the_tracking_server_is_down(trained_run):
    result, stderr, down = trained_run["result"], trained_run["stderr"], trained_run["tracking_uri"]
    # the shared run trained up to its first checkpoint, was killed, and its rerun trained on to the end
    assert result["status"] == "resumed" and result["start_step"] == trained_run["killed_at"] > 0
    assert result["final_step"] == 6
    for attempt in (trained_run["killed_log"], stderr):  # the killed attempt's and the rerun's
        warnings = [line for line in attempt.splitlines() if "WARNING: MLflow" in line]
        assert len(warnings) == 1 and f"tracking store {down} did not answer" in warnings[0], warnings
        assert "training goes on without MLflow" in warnings[0]
    manifest = read_document(result["run_manifest"], RunManifest)[0]
    assert manifest.mlflow.status == "unreachable" and manifest.mlflow.tracking_uri == down
    assert manifest.mlflow.run_id is None and "Connection refused" in manifest.mlflow.error
    assert result["mlflow"] == manifest.mlflow.model_dump()
    assert "cpt_mlflow" not in open(f"{result['run_folder']}/train.yaml").read()  # no logger without a store


def test_the_preflight_asks_once_and_leaves_the_retries_to_the_processes(monkeypatch, tmp_path):
    """One request without retries (MLflow's defaults retry for about 4 minutes: past the test's timeout); the
    processes a tracked step starts get a few quick retries."""
    from ui.airflow_server import find_free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{find_free_port()}")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    tracker, record = connect("training")
    assert tracker is None and record.status == "unreachable" and "Connection refused" in record.error
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}")
    tracker, record = connect("training")
    assert tracker is not None and record.status == "tracked" and os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert connect("training") == (None, MlflowRun(status="off"))


def test_a_retry_finds_its_run_and_the_links_hold_no_credentials(monkeypatch, tmp_path):
    from mlflow import MlflowClient

    store = f"file://{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "cpt-tests")
    monkeypatch.delenv("CPT_MLFLOW_UI_URL", raising=False)
    tracker, record = connect("training")
    first = tracker.open_run("abc-run", {"cpt.step": "train"})
    again = connect("training")[0].open_run("abc-run", {"cpt.try_number": "2"})
    assert first.run_id == again.run_id and first.experiment_id == record.experiment_id
    tags = MlflowClient(store).get_run(first.run_id).data.tags
    assert tags["cpt.step"] == "train" and tags["cpt.try_number"] == "2" and tags["run_name"] == "abc-run"
    assert first.run_url == f"http://127.0.0.1:5000/#/experiments/{record.experiment_id}/runs/{first.run_id}"
    with_credentials = "https://user:pw@mlflow.example.com:8443/x"  # pragma: allowlist secret
    assert without_credentials(with_credentials) == "https://mlflow.example.com:8443/x"
    assert run_url(with_credentials, "1", "r") == "https://mlflow.example.com:8443/x/#/experiments/1/runs/r"
    monkeypatch.setenv("CPT_MLFLOW_UI_URL", "https://ui.example.com/")
    assert run_url(store, "1", "r") == "https://ui.example.com/#/experiments/1/runs/r"


def test_the_composer_logger_turns_an_outage_into_one_warning(capfd, tmp_path):
    from ui.airflow_server import find_free_port

    from cpt_tasks.tracking.mlflow_logger import SafeMLFlowLogger

    down = SafeMLFlowLogger(tracking_uri=f"http://127.0.0.1:{find_free_port()}", experiment_name="x",
                            log_system_metrics=False)
    down.log_metrics({"loss": 1.0}, step=1)
    down.log_hyperparameters({"lr": 0.1})
    down.post_close()
    err = capfd.readouterr().err
    assert err.count("WARNING: MLflow tracking failed while connecting") == 1 and not down._enabled

    import shutil

    import mlflow

    store = tmp_path / "mlruns"
    broken = SafeMLFlowLogger(tracking_uri=f"file://{store}", experiment_name="x", log_system_metrics=False,
                              synchronous=True)
    broken.tags["run_name"] = "r"
    broken._start_mlflow_run(None)  # what init() does on rank 0
    try:
        broken.log_metrics({"loss": 1.0}, step=1)
        shutil.rmtree(store)  # the store goes away mid-run
        broken.log_metrics({"loss": 0.5}, step=2)
        broken.log_metrics({"loss": 0.25}, step=3)
        broken.post_close()
    finally:
        with contextlib.suppress(Exception):  # the run's files are gone: only this process's active run is left
            mlflow.end_run()
    err = capfd.readouterr().err
    assert err.count("WARNING: MLflow tracking failed while logging metrics") == 1 and not broken._enabled
    assert "WARNING" not in err.replace("WARNING: MLflow tracking failed while logging metrics", "")
