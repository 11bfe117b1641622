"""The training step on Kubernetes: one pod when ``nodes`` = 1, an **Indexed Job** over N pods when ``nodes`` > 1
("Job with Pod-to-Pod Communication" in the Kubernetes documentation).

One operator, by composition: ``StepTrainOperator`` *is* the pipeline's pod operator (a
:class:`~cpt_pipeline.operators.StepPodOperator`, deferrable, logs streamed while it trains). With more
than one node it builds, for that try, a :class:`NodesJobOperator` from its own rendered settings and runs the
Job through it; that object is a helper, never a task of the DAG. Composition rather than one class inheriting
both provider operators: the Job operator redefines the pod operator's ``pod`` and ``execute``, so a class that
is both must undo one of them and switch a dozen attributes at run time. Always an Indexed Job (one pod for one
node) would have been the other single path; it would lose the single pod's streamed logs, reattachment and
XCom sidecar, which most runs use, and change every default manifest.

The Job:
- ``completionMode: Indexed``, ``completions = parallelism = nodes``: pod ``<job>-<i>`` gets
  ``JOB_COMPLETION_INDEX = i``, which becomes its ``--node_rank``; every pod's ``subdomain`` is the chart's
  headless Service (``trainNodes``), so ``<job>-0.<service>`` is node 0, the rendezvous host.
- A failed pod fails the whole Job at once: ``backoffLimit: 0``, and a ``podFailurePolicy`` that ends the Job
  on exit 2 or 3 (bad input, bad data) and on a disruption (preemption, eviction). The Job controller then
  terminates the other pods; Airflow's retry (a new Job) restarts all nodes together, from the last checkpoint.
- No XCom sidecar (it would keep a failed node's pod Running, so the Job could not fail at once): node 0
  writes its result as the container's termination message, read back from the finished pod.
- Deferrable: the triggerer waits for the Job. The pods' logs arrive in the task log at the end
  (``kubectl logs -f <job>-0-…`` meanwhile).
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Sequence

from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from kubernetes.client import models as k8s

from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.errors import EXIT_CHECK_FAILED, EXIT_USER_ERROR, NO_RETRY_EXITS
from cpt_tasks.layout import TERMINATION_LOG, TRAIN_NODE_LABEL
from cpt_pipeline.operators import StepPodOperator, container_exit_code, exit_status_error

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
MASTER_PORT = TrainConfig.model_fields["master_port"].default  # node 0's rendezvous; the agreement uses the next
JOB_TTL = 7 * 24 * 3600  # a finished Job (and its pods: `kubectl logs`) stays a week
PODS_WAIT = 300  # seconds for the Job controller to create every pod (Pending counts)
PODS_POLL = 5
# The pod operator's own settings (not the task's: its DAG, Params, outlets, retries), passed on to the Job.
POD_SETTINGS = frozenset(inspect.signature(KubernetesPodOperator.__init__).parameters) - {"self", "kwargs"}


def pod_failure_policy() -> k8s.V1PodFailurePolicy:
    """End the Job on a final exit status or a disruption; with backoffLimit 0 any other failure ends it too."""
    final = k8s.V1PodFailurePolicyOnExitCodesRequirement(container_name="base", operator="In",
                                                         values=[EXIT_USER_ERROR, EXIT_CHECK_FAILED])
    disrupted = k8s.V1PodFailurePolicyOnPodConditionsPattern(type="DisruptionTarget", status="True")
    return k8s.V1PodFailurePolicy(rules=[k8s.V1PodFailurePolicyRule(action="FailJob", on_exit_codes=final),
                                         k8s.V1PodFailurePolicyRule(action="FailJob", on_pod_conditions=[disrupted])])


def node_arguments(nodes: int, subdomain: str) -> list[str]:
    """What a node pod adds to ``cpt-tasks train``: Kubernetes expands ``$(VAR)`` from the container's env."""
    return ["--nnodes", str(nodes), "--node_rank", "$(JOB_COMPLETION_INDEX)",
            "--master_addr", f"$(CPT_JOB_NAME)-0.{subdomain}", "--master_port", str(MASTER_PORT)]


def node_env(env: list[k8s.V1EnvVar]) -> list[k8s.V1EnvVar]:
    """The pod's env for a node: the Job's name (node 0's host name is ``<job>-0``) and the result as the
    termination message."""
    job_name = k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path=f"metadata.labels['{JOB_NAME_LABEL}']"))
    kept = [e for e in env if e.name not in ("CPT_RESULT_FILE", "CPT_JOB_NAME")]
    return [*kept, k8s.V1EnvVar(name="CPT_RESULT_FILE", value=TERMINATION_LOG),
            k8s.V1EnvVar(name="CPT_JOB_NAME", value_from=job_name)]


class NodesJobOperator(KubernetesJobOperator):
    """The Indexed Job of one multi-node training try (see the module docstring), made by
    :meth:`StepTrainOperator.node_job`."""

    def __init__(self, *, nodes: int, subdomain: str, **kwargs) -> None:
        full_job_spec = k8s.V1Job(spec=k8s.V1JobSpec(pod_failure_policy=pod_failure_policy(),
                                                     template=k8s.V1PodTemplateSpec()))
        job = {"completion_mode": "Indexed", "completions": nodes, "parallelism": nodes, "backoff_limit": 0,
               "full_job_spec": full_job_spec, "ttl_seconds_after_finished": JOB_TTL,
               "wait_until_job_complete": True, "deferrable": True, "job_poll_interval": 30,
               "do_xcom_push": False,  # node 0's termination message carries the result
               "subdomain": subdomain}
        super().__init__(**{**kwargs, **job})

    def start(self, context) -> None:
        """Create the Job, wait for its pods, defer to the trigger (``execute_complete`` resumes): the provider's
        deferrable ``execute``, called as methods since this operator runs inside the train task."""
        self.job_request_obj = self.build_job_request_obj(context)
        self.job = self.create_job(self.job_request_obj)
        context["ti"].xcom_push(key="job_name", value=self.job.metadata.name)
        context["ti"].xcom_push(key="job_namespace", value=self.job.metadata.namespace)
        self.pods = self.get_pods(pod_request_obj=self.pod_request_obj, context=context)
        self.execute_deferrable()  # raises TaskDeferred
        raise AirflowException("the Job was created but not deferred")

    def get_pods(self, pod_request_obj: k8s.V1Pod, context, *, exclude_checked: bool = True) -> list[k8s.V1Pod]:
        """Every pod of this Job, waiting until the Job controller created them all (the provider's own lists
        four times without pause and gives up: apache/airflow#70585); the Job is deleted if they never come."""
        selector = f"{JOB_NAME_LABEL}={self.job.metadata.name}"
        deadline = time.monotonic() + PODS_WAIT
        while True:
            pods = self.client.list_namespaced_pod(namespace=self.job.metadata.namespace,
                                                   label_selector=selector).items
            if len(pods) >= self.parallelism or time.monotonic() > deadline:
                break
            time.sleep(PODS_POLL)
        if len(pods) < self.parallelism:
            self.on_kill()
            raise AirflowException(f"Job {self.job.metadata.name}: {len(pods)} of {self.parallelism} pods after "
                                   f"{PODS_WAIT}s; Job deleted, the retry starts a new one")
        return sorted(pods, key=node_index)

    def finished_pods(self, event: dict) -> list[k8s.V1Pod]:
        """The Job's pods as they ended (read before the cleanup deletes the succeeded ones)."""
        namespace = event.get("pod_namespace") or self.namespace
        pods = []
        for name in event.get("pod_names") or []:
            try:
                pods.append(self.hook.get_pod(name, namespace))
            except Exception as exc:  # gone already: its exit status is unknown (treated as transient)
                self.log.warning("pod %s: %s", name, exc)
        return sorted(pods, key=node_index)


class StepTrainOperator(StepPodOperator):
    """The train step: ``nodes`` (templated) decides at run time between this pod and the Indexed Job."""

    template_fields: Sequence[str] = (*StepPodOperator.template_fields, "nodes")

    def __init__(self, *, nodes: int | str = 1, node_subdomain: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nodes = nodes
        self.node_subdomain = node_subdomain
        self._pod_kwargs = {k: v for k, v in kwargs.items() if k in POD_SETTINGS}  # what the Job's pods are made of
        self._job: NodesJobOperator | None = None

    def execute(self, context):
        if int(self.nodes) <= 1:
            return super().execute(context)
        self._check_gate(context)
        if not self.node_subdomain:
            raise AirflowFailException(f"nodes = {self.nodes}: multi-node training is off in this deployment "
                                       "(CPT_TRAIN_SUBDOMAIN is empty: the chart's trainNodes.enabled is false)")
        self._job = self.node_job()
        self._job.start(context)

    def node_job(self, **settings) -> NodesJobOperator:
        """This try's Indexed Job: this operator's pod settings as rendered, plus what makes a pod a node (and
        ``settings`` over them)."""
        nodes = int(self.nodes)
        rendered = {name: getattr(self, name) for name in self.template_fields if name in self._pod_kwargs}
        node = {"labels": {**self.labels, TRAIN_NODE_LABEL: "true"}, "env_vars": node_env(self.env_vars),
                "arguments": [*self.arguments, *node_arguments(nodes, self.node_subdomain)]}
        return NodesJobOperator(task_id=self.task_id, **{**self._pod_kwargs, **rendered, **node, **settings},
                                nodes=nodes, subdomain=self.node_subdomain)

    def job_manifest(self, context, kube_config: str) -> k8s.V1Job:
        """The Job ``execute`` would create for the rendered ``nodes``, built offline (``make pods``): the
        provider's builder loads ``kube_config`` (asking whether it runs in a cluster; nothing is contacted)."""
        job = self.node_job(config_file=kube_config, in_cluster=False).build_job_request_obj(context)
        job.spec.template.metadata.labels.pop("airflow_kpo_in_cluster", None)  # as the pods' dry run
        return job

    def execute_complete(self, context, event: dict, **kwargs):
        """The Job ended (the trigger's event): the provider's logs and cleanup, then node 0's result."""
        self._pull_upstream(context)
        job = self.node_job()
        pods = job.finished_pods(event)
        try:
            job.execute_complete(context, event, **kwargs)  # logs, cleanup; raises when the Job failed
        except AirflowException as exc:
            for pod in pods:
                code = container_exit_code(pod, job.base_container_name)
                if code in NO_RETRY_EXITS:
                    raise exit_status_error(code, f"node {node_index(pod)} ({pod.metadata.name})") from exc
            raise
        return self._record(context, node0_result(pods, job.base_container_name))

    def on_kill(self) -> None:
        if self._job is not None:
            self._job.on_kill()
        else:
            super().on_kill()


def node_index(pod: k8s.V1Pod) -> int:
    """The pod's completion index (its node rank)."""
    annotations = (pod.metadata and pod.metadata.annotations) or {}
    return int(annotations.get(INDEX_ANNOTATION, 1 << 30))


def node0_result(pods: list[k8s.V1Pod], container: str) -> dict:
    """Node 0's result document: the termination message of its ``container``."""
    for pod in pods:
        if node_index(pod) != 0:
            continue
        for status in (pod.status and pod.status.container_statuses) or []:
            terminated = status.state and status.state.terminated
            if status.name == container and terminated and terminated.message:
                try:
                    return json.loads(terminated.message)
                except ValueError:
                    raise AirflowException(f"node 0 ({pod.metadata.name}): its termination message is not the "
                                           f"result JSON: {terminated.message[:200]!r}") from None
    raise AirflowException("node 0's pod or its termination message is gone; the retry finds the finished run")
