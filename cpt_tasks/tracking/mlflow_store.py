"""MLflow tracking of the training and evaluation steps: the store (a deployment setting), a pre-flight that opens
a step's run (found by name on a retry, else created) with one quick request per call, the run's page in the
MLflow UI, and the store's URI without credentials for the documents.

- The store is ``$MLFLOW_TRACKING_URI``; unset or empty, tracking is off. The embedded default (``make demo``)
  uses the file store ``file://$CPT_HOME/mlflow``; a deployment names its tracking server (Airflow's
  ``CPT_MLFLOW_TRACKING_URI``, credentials by Secret reference as ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``/
  ``_TOKEN``, which MLflow reads itself).
- The experiment is ``$MLFLOW_EXPERIMENT_NAME``, else the Airflow DAG id (``AIRFLOW_CTX_DAG_ID``), else
  ``cpt-pipeline``. Tags name the Airflow DAG, run, task and try (``AIRFLOW_CTX_*``).
- A store that does not answer is one warning: the step goes on without MLflow and its documents record
  ``unreachable``. The pre-flight asks with no retries and a 5 s timeout (MLflow's defaults retry a failed call
  for about 4 minutes); the training and evaluation processes get 2 retries and 20 s, and their logger
  (``cpt_mlflow``, Composer's MLFlowLogger) turns an outage during the run into one warning as well.
- The run's page: ``$CPT_MLFLOW_UI_URL``, else an http(s) tracking URI itself (a tracking server serves the
  UI), else ``http://127.0.0.1:5000`` (``make mlflow``).

Light core: mlflow is imported only where the store is asked.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from cpt_tasks.documents.train_docs import MlflowRun

DEFAULT_UI_URL = "http://127.0.0.1:5000"
DEFAULT_EXPERIMENT = "cpt-pipeline"
PREFLIGHT_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
WORKER_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
AIRFLOW_CONTEXT = {"cpt.dag_id": "AIRFLOW_CTX_DAG_ID", "cpt.dag_run_id": "AIRFLOW_CTX_DAG_RUN_ID",
                   "cpt.task_id": "AIRFLOW_CTX_TASK_ID", "cpt.try_number": "AIRFLOW_CTX_TRY_NUMBER"}


def tracking_uri() -> str:
    """The store (``$MLFLOW_TRACKING_URI``); empty: tracking is off."""
    return os.environ.get("MLFLOW_TRACKING_URI", "").strip()


def experiment_name() -> str:
    """``$MLFLOW_EXPERIMENT_NAME``, else the Airflow DAG id, else ``cpt-pipeline``."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or os.environ.get("AIRFLOW_CTX_DAG_ID") or DEFAULT_EXPERIMENT


def without_credentials(uri: str) -> str:
    """``uri`` without a user name or password (what documents and logs may show)."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=host))


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI (a browser URL: Airflow shows only http(s) links)."""
    base = os.environ.get("CPT_MLFLOW_UI_URL", "").strip()
    if not base:
        clean = without_credentials(uri)
        base = clean if clean.startswith(("http://", "https://")) else DEFAULT_UI_URL
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def airflow_tags() -> dict[str, str]:
    """The Airflow DAG, run, task and try of this process, as tags (none outside Airflow)."""
    return {tag: os.environ[var] for tag, var in AIRFLOW_CONTEXT.items() if os.environ.get(var)}


def warn(message: str) -> None:
    print(f"[cpt-tracking] WARNING: {message}", file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    """One line on what went wrong: the exception, shortened to its cause (MLflow's messages repeat the URL)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    cause = re.search(r"(\[Errno [^\]]+\][^\"')]*|\d{3} Client Error[^\"')]*|Read timed out[^\"')]*)", text)
    return f"{type(exc).__name__}: {cause.group(1).strip() if cause else text[:300]}"


@contextmanager
def _quick_requests() -> Iterator[None]:
    """MLflow's HTTP settings for a pre-flight request: no retries, a short timeout (read per request)."""
    saved = {name: os.environ.get(name) for name in PREFLIGHT_HTTP}
    os.environ.update(PREFLIGHT_HTTP)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Tracker:
    """One step's MLflow experiment: opens runs (a retry finds its run by name), logs, closes them. Every call
    is quick (no retries) and none raises: a failure is one warning and the step goes on."""

    def __init__(self, uri: str, experiment: str, experiment_id: str, client) -> None:
        self.uri, self.experiment, self.experiment_id, self._client = uri, experiment, experiment_id, client
        self.error: str | None = None  # the first failure; the tracker is quiet after it

    def record(self, run_id: str | None = None) -> MlflowRun:
        """The document's view of a run of this experiment (or of the experiment alone)."""
        return MlflowRun(status="tracked", tracking_uri=without_credentials(self.uri), experiment_id=self.experiment_id,
                         run_id=run_id, run_url=run_url(self.uri, self.experiment_id, run_id) if run_id else None)

    def _call(self, what: str, call):
        if self.error:
            return None
        try:
            with _quick_requests():
                return call()
        except Exception as exc:  # any store error: a warning, never the step's failure
            self.error = _first_line(exc)
            warn(f"MLflow tracking failed while {what} ({self.error}); going on without MLflow")
            return None

    def open_run(self, run_name: str, tags: dict[str, str]) -> MlflowRun:
        """The run named ``run_name`` (Composer's ``tags.run_name``, stable across retries), found or created,
        with ``tags`` set; ``unreachable`` when the store failed."""

        def find_or_create() -> str:
            found = self._client.search_runs([self.experiment_id], f'tags.run_name = "{run_name}"', max_results=1)
            if found:
                run_id = found[0].info.run_id
                for key, value in tags.items():
                    self._client.set_tag(run_id, key, value)
                return run_id
            run = self._client.create_run(self.experiment_id, run_name=run_name, tags={"run_name": run_name, **tags})
            return run.info.run_id

        run_id = self._call(f"opening run {run_name}", find_or_create)
        if run_id is None:
            return MlflowRun(status="unreachable", tracking_uri=without_credentials(self.uri), error=self.error)
        return self.record(run_id)

    def logger(self, run: MlflowRun, run_name: str, tags: dict[str, str], system_metrics: bool) -> dict:
        """The ``loggers`` entry of an LLM-Foundry YAML that logs into ``run`` (the store comes from
        ``$MLFLOW_TRACKING_URI`` in the processes' environment: no credentials in the YAML)."""
        return {"cpt_mlflow": {"experiment_name": self.experiment, "run_name": run_name, "run_id": run.run_id,
                               "tags": tags, "resume": True, "log_system_metrics": system_metrics,
                               "synchronous": False}}

    def log_results(self, run: MlflowRun, metrics: dict[str, float], params: dict[str, str],
                    files: list[str]) -> None:
        """Metrics (step 0), parameters and files (artifacts) of a run the parent process owns."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)

        def log() -> None:
            self._client.log_batch(run.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                                   params=[Param(k, str(v)[:6000]) for k, v in params.items()])
            for path in files:
                self._client.log_artifact(run.run_id, path)

        self._call(f"logging to run {run.run_id}", log)

    def nest(self, parent: MlflowRun, children: list[str]) -> None:
        """Show the runs ``children`` (run ids) under ``parent`` in the MLflow UI (the ``mlflow.parentRunId`` tag)."""
        if parent.run_id:
            self._call(f"nesting runs under {parent.run_id}", lambda: [
                self._client.set_tag(child, "mlflow.parentRunId", parent.run_id) for child in children])

    def finish(self, run: MlflowRun, status: str) -> None:
        """Mark ``run`` FINISHED or FAILED (best effort)."""
        if run.run_id:
            self._call(f"closing run {run.run_id}", lambda: self._client.set_terminated(run.run_id, status))


def connect(step: str) -> tuple[Tracker | None, MlflowRun]:
    """The step's experiment in the store after one quick pre-flight request (created if new), and what the
    documents record; (None, off/unreachable) when there is no store or it does not answer."""
    uri = tracking_uri()
    if not uri:
        print(f"[cpt-tracking] MLflow tracking off (MLFLOW_TRACKING_URI is not set): {step} is not tracked",
              file=sys.stderr, flush=True)
        return None, MlflowRun(status="off")
    clean, name = without_credentials(uri), experiment_name()
    try:
        from mlflow import MlflowClient

        with _quick_requests():
            client = MlflowClient(uri)
            found = client.get_experiment_by_name(name)
            experiment_id = found.experiment_id if found else client.create_experiment(name)
    except Exception as exc:  # refused, timed out, 401/403, not an MLflow server, a bad URI
        error = _first_line(exc)
        warn(f"MLflow tracking store {clean} did not answer ({error}); {step} goes on without MLflow")
        return None, MlflowRun(status="unreachable", tracking_uri=clean, error=error)
    for key, value in WORKER_HTTP.items():
        os.environ.setdefault(key, value)  # the processes this step starts inherit them
    tracker = Tracker(uri, name, experiment_id, client)
    return tracker, tracker.record()
