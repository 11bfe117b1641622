"""The two runners of a :class:`~cpt_pipeline.steps.Step`: a local process with the tasks environment
(``LocalStepOperator``) and a Kubernetes pod (``StepPodOperator``, a KubernetesPodOperator).

Both share :class:`StepMixin`: the result JSON becomes the task's XCom, the exit status decides retry or not
(2 = bad input and 3 = bad data fail at once; 99 = already complete marks the task skipped; anything else
is retried), a gate can skip the step before it starts, and the result feeds the Assets and OpenLineage.
A tracked step (train, evaluate) carries the extra link "MLflow run" to the run its result names.
Each try gets the run's deadline Param (``<step>_timeout``) as its ``execution_timeout`` before it starts
(``pre_execute``); a deferred pod (training) carries it into its trigger (the provider's own deadline).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Asset, AssetAlias, BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from cpt_tasks.errors import EXIT_ALREADY_COMPLETE, EXIT_USER_ERROR, NO_RETRY_EXITS
from cpt_pipeline.lineage import operator_lineage
from cpt_pipeline.params import step_timeout, unknown_params
from cpt_pipeline.wiring import Wiring


def exit_status_error(code: int, what: str) -> AirflowException:
    """The exception for a step that exited with ``code``: final for user/data errors, else retried."""
    if code == EXIT_ALREADY_COMPLETE:
        return AirflowSkipException(f"{what}: already complete (exit {code}); nothing to do")
    if code in NO_RETRY_EXITS:
        kind = "bad input or arguments" if code == EXIT_USER_ERROR else "the data failed verification"
        return AirflowFailException(f"{what} exited {code}: {kind}; not retrying (see the log above)")
    return AirflowException(f"{what} exited {code}; transient or unexpected, will be retried")


class StepMixin:
    """Result handling shared by both runners (see the module docstring)."""

    wiring: Wiring = Wiring()
    _cpt_result: dict | None = None
    _cpt_upstream: dict | None = None

    def pre_execute(self, context) -> None:
        """Refuse a run whose conf names a Param the DAG does not have (a misspelt Param would otherwise be kept
        as an unknown one and the run would go on with the default); then this run's deadline for the step
        (Param ``<step>_timeout``), read when the try starts: Airflow applies ``execution_timeout`` right after
        this, around ``execute``."""
        dag_run = context.get("dag_run")
        if dag_run is not None and self.has_dag():
            problem = unknown_params(dag_run.conf or {}, self.dag.params.keys())
            if problem:
                raise AirflowFailException(problem)
        limit = step_timeout(self.task_id, context.get("params"))
        if limit is not None:
            self.execution_timeout = limit
        super().pre_execute(context)

    def _pull_upstream(self, context) -> dict | None:
        """The result of the step this one's wiring reads (its gate's input, its lineage's data), if any."""
        source = self.wiring.upstream
        self._cpt_upstream = context["ti"].xcom_pull(task_ids=source) if source else None
        return self._cpt_upstream

    def _check_gate(self, context) -> None:
        upstream = self._pull_upstream(context)
        reason = self.wiring.gate(context["params"], upstream) if self.wiring.gate else None
        if reason:
            raise AirflowSkipException(f"{self.task_id} skipped: {reason}")
        labels = getattr(self, "labels", None) or {}
        if subset := labels.get("cpt-pipeline/subset"):
            if (part := labels.get("cpt-pipeline/part")) is not None:
                subset = f"{subset}/{part}"  # one part of a subset converted in parts
            context["subset"] = subset  # the mapped task's label in the UI (map_index_template)
            self.log.info("Component: %s", subset)  # and in its log (make demo names the task by it)
        if fraction := labels.get("cpt-pipeline/replay-fraction"):
            context["fraction"] = fraction  # a proxy run of the replay sweep
            self.log.info("Component: replay-%s", fraction)

    def _record(self, context, result: dict | None) -> dict | None:
        """Keep the step's result and give its Asset events their metadata: an Asset outlet gets its entry of the
        wiring's extras; an AssetAlias outlet one event per entry (the Assets this run made, no others)."""
        self._cpt_result = result
        if result and self.wiring.extras:
            extras = self.wiring.extras(result)
            for outlet in self.outlets or []:
                if isinstance(outlet, AssetAlias):
                    for name, extra in extras.items():
                        context["outlet_events"][outlet].add(Asset(name=name), extra=extra)
                elif extra := extras.get(getattr(outlet, "name", None)):
                    context["outlet_events"][outlet].extra.update(extra)
        return result

    def get_openlineage_facets_on_complete(self, task_instance):
        """Inputs and outputs of the finished step for the OpenLineage provider."""
        return operator_lineage(self.wiring.lineage, self._cpt_result, self._cpt_upstream)


def mlflow_run_url(result: object) -> str:
    """The MLflow run page a step's result names ("" when it has none: not tracked, or skipped)."""
    tracked = result.get("mlflow") if isinstance(result, dict) else None
    url = tracked.get("run_url") if isinstance(tracked, dict) else None
    return url if isinstance(url, str) else ""


class MlflowRunLink(BaseOperatorLink):
    """"MLflow run": the step's run in the MLflow UI, read from the step's own result (its XCom). The worker
    resolves it when the task ends and stores it; the UI shows http(s) links only (the UI URL setting)."""

    name = "MLflow run"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        try:
            return mlflow_run_url(XCom.get_value(ti_key=ti_key, key="return_value"))
        except Exception:  # a link is never worth failing or cluttering the task's end
            return ""


class LocalStepOperator(StepMixin, BaseOperator):
    """Run ``cpt-tasks <arguments>`` as a local process with the tasks environment (``CPT_RUNNER=local``);
    with ``nodes`` > 1 (training) one process per node on 127.0.0.1 (``cpt_pipeline.local_nodes``)."""

    template_fields = ("arguments", "env_vars", "labels", "nodes", "shm_size")
    ui_color = "#e7f5ff"

    def __init__(self, *, arguments: list[str], tasks_bin: str, env_vars: dict | None = None,
                 labels: dict | None = None, wiring: Wiring | None = None, nodes: int | str = 1,
                 shm_size: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.arguments = arguments
        self.tasks_bin = tasks_bin
        self.env_vars = env_vars or {}
        self.labels = labels or {}
        self.wiring = wiring or Wiring()
        self.nodes = nodes
        self.shm_size = shm_size
        self._proc: subprocess.Popen | None = None
        self._nodes = None

    def execute(self, context):
        self._check_gate(context)
        if int(self.nodes) > 1:
            return self._record(context, self._run_nodes(int(self.nodes)))
        argv = [self.tasks_bin, *map(str, self.arguments)]
        self.log.info("Running: %s", " ".join(argv))
        with tempfile.TemporaryDirectory(prefix="cpt-step-") as tmp:
            result_file = Path(tmp) / "result.json"
            env = {**os.environ, **{k: str(v) for k, v in self.env_vars.items()},
                   "CPT_RESULT_FILE": str(result_file), "PYTHONUNBUFFERED": "1"}
            self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          env=env, start_new_session=True, bufsize=1)
            for line in self._proc.stdout:
                self.log.info("%s", line.rstrip())
            code = self._proc.wait()
            if code != 0:
                raise exit_status_error(code, f"cpt-tasks {self.arguments[0]}")
            result = json.loads(result_file.read_text()) if result_file.exists() else None
        return self._record(context, result)

    def _run_nodes(self, nodes: int) -> dict | None:
        """One ``cpt-tasks train`` per node, each in its own /dev/shm and scratch; node 0's result."""
        from cpt_pipeline.local_nodes import LocalNodes, PrivateShmUnavailable, check_private_shm, \
            combined_status, free_port_pair, node_argv, shm_bytes

        try:
            check_private_shm()
        except PrivateShmUnavailable as exc:
            raise AirflowFailException(str(exc)) from None
        port = free_port_pair()
        argv = [self.tasks_bin, *map(str, self.arguments)]
        with tempfile.TemporaryDirectory(prefix="cpt-nodes-") as tmp:
            results = [Path(tmp) / f"node-{rank}-result.json" for rank in range(nodes)]
            argvs = [node_argv(argv, nodes, rank, port, Path(tmp) / f"node-{rank}", shm_bytes(self.shm_size))
                     for rank in range(nodes)]
            envs = [{**os.environ, **{k: str(v) for k, v in self.env_vars.items()}, "CPT_RESULT_FILE": str(result),
                     "PYTHONUNBUFFERED": "1"} for result in results]
            self.log.info("Running %d nodes on 127.0.0.1:%d: %s", nodes, port, " ".join(argvs[0]))
            self._nodes = LocalNodes(argvs, envs, lambda line: self.log.info("%s", line))
            code = combined_status(self._nodes.wait())
            if code != 0:
                raise exit_status_error(code, f"cpt-tasks {self.arguments[0]} ({nodes} nodes)")
            return json.loads(results[0].read_text()) if results[0].exists() else None

    def on_kill(self) -> None:
        if self._proc and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
        if self._nodes is not None:
            self._nodes.stop()


class StepPodOperator(StepMixin, KubernetesPodOperator):
    """A KubernetesPodOperator that applies the pipeline's exit-status policy, gate, Assets and lineage."""

    def __init__(self, *, wiring: Wiring | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.wiring = wiring or Wiring()

    def execute(self, context):
        self._check_gate(context)
        return self._record(context, super().execute(context))

    def trigger_reentry(self, context, event):
        # Deferred (training): this is a fresh operator instance in the worker that resumes the task.
        self._pull_upstream(context)
        return self._record(context, super().trigger_reentry(context, event))

    def cleanup(self, pod, remote_pod, xcom_result=None, context=None) -> None:
        try:
            super().cleanup(pod, remote_pod, xcom_result=xcom_result, context=context)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            code = container_exit_code(remote_pod, self.base_container_name)
            if code in NO_RETRY_EXITS:
                raise exit_status_error(code, f"pod {pod and pod.metadata.name}") from exc
            raise

    def render_template_fields(self, context, jinja_env=None) -> None:
        """Airflow's rendering, plus each emptyDir's ``size_limit`` (the provider renders a volume's name, PVC
        and ConfigMap only; training's /dev/shm size is a Param)."""
        super().render_template_fields(context, jinja_env)
        for volume in self.volumes or []:
            if volume.empty_dir is not None and volume.empty_dir.size_limit:
                volume.empty_dir.size_limit = self.render_template(volume.empty_dir.size_limit, context, jinja_env)


def container_exit_code(remote_pod, container: str) -> int | None:
    """The exit code of ``container`` in a finished pod (None when it did not terminate)."""
    statuses = (remote_pod.status.container_statuses if remote_pod and remote_pod.status else None) or []
    for status in statuses:
        if status.name == container and status.state and status.state.terminated:
            return status.state.terminated.exit_code
    return None
