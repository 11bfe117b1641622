"""The training step on Kubernetes: one pod (``nodes`` = 1, exactly the StepPodOperator path), or for ``nodes``
> 1 one **Indexed Job** over N pods ("Job with Pod-to-Pod Communication" in the Kubernetes documentation).

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

import json
import time
from collections.abc import Sequence

from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from kubernetes.client import models as k8s

from cpt_tasks.configs.train import TrainConfig
from cpt_tasks.errors import EXIT_CHECK_FAILED, EXIT_USER_ERROR, NO_RETRY_EXITS
from cpt_tasks.layout import TERMINATION_LOG, TRAIN_NODE_LABEL
from cpt_tasks.pipeline.operators import StepPodOperator, container_exit_code, exit_status_error

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
MASTER_PORT = TrainConfig.model_fields["master_port"].default  # node 0's rendezvous; the agreement uses the next
JOB_TTL = 7 * 24 * 3600  # a finished Job (and its pods: `kubectl logs`) stays a week
PODS_WAIT = 300  # seconds for the Job controller to create every pod (Pending counts)
PODS_POLL = 5


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


class StepTrainOperator(StepPodOperator, KubernetesJobOperator):
    """The train step: ``nodes`` (templated) decides at run time between the single pod and the Indexed Job."""

    template_fields: Sequence[str] = (*StepPodOperator.template_fields, "nodes")

    def __init__(self, *, nodes: int | str = 1, node_subdomain: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nodes = nodes
        self.node_subdomain = node_subdomain

    # KubernetesJobOperator turns ``pod`` into a deprecated view of ``pods``; the single-pod path needs its own.
    @property
    def pod(self):
        return self._pod

    @pod.setter
    def pod(self, value) -> None:
        self._pod = value

    def execute(self, context):
        self._check_gate(context)
        if int(self.nodes) <= 1:
            return self._record(context, KubernetesPodOperator.execute(self, context))
        if not self.node_subdomain:
            raise AirflowFailException(f"nodes = {self.nodes}: multi-node training is off in this deployment "
                                       "(CPT_TRAIN_SUBDOMAIN is empty: the chart's trainNodes.enabled is false)")
        self.become_job(int(self.nodes))
        KubernetesJobOperator.execute(self, context)  # defers to the trigger; execute_complete resumes
        raise AirflowException("the Job ended without deferring")  # wait_until_job_complete and deferrable are set

    def become_job(self, nodes: int) -> None:
        """Turn this pod's settings into the Indexed Job's (see the module docstring)."""
        self.completion_mode, self.completions, self.parallelism = "Indexed", nodes, nodes
        self.backoff_limit = 0
        self.full_job_spec = k8s.V1Job(spec=k8s.V1JobSpec(pod_failure_policy=pod_failure_policy(),
                                                          template=k8s.V1PodTemplateSpec()))
        self.ttl_seconds_after_finished = JOB_TTL
        self.wait_until_job_complete, self.deferrable, self.job_poll_interval = True, True, 30
        self.do_xcom_push = False
        self.subdomain = self.node_subdomain
        self.labels = {**self.labels, TRAIN_NODE_LABEL: "true"}
        self.env_vars = node_env(self.env_vars)
        self.arguments = [*self.arguments, *node_arguments(nodes, self.node_subdomain)]

    def job_manifest(self, context) -> k8s.V1Job:
        """The Job ``execute`` would create, built offline (``make pods``): the provider's builder asks the hook
        whether it runs in a cluster, which needs a kube config; say no."""
        self.become_job(int(self.nodes))
        self.hook._is_in_cluster = False
        job = self.build_job_request_obj(context)
        job.spec.template.metadata.labels.pop("airflow_kpo_in_cluster", None)
        return job

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

    def execute_complete(self, context, event: dict, **kwargs):
        self._pull_upstream(context)
        pods = self._finished_pods(event)
        try:
            super().execute_complete(context, event, **kwargs)  # logs, cleanup; raises when the Job failed
        except AirflowException as exc:
            for pod in pods:
                code = container_exit_code(pod, self.base_container_name)
                if code in NO_RETRY_EXITS:
                    raise exit_status_error(code, f"node {node_index(pod)} ({pod.metadata.name})") from exc
            raise
        return self._record(context, node0_result(pods, self.base_container_name))

    def _finished_pods(self, event: dict) -> list[k8s.V1Pod]:
        """The Job's pods as they ended (read before the cleanup deletes the succeeded ones)."""
        namespace = event.get("pod_namespace") or self.namespace
        pods = []
        for name in event.get("pod_names") or []:
            try:
                pods.append(self.hook.get_pod(name, namespace))
            except Exception as exc:  # gone already: its exit status is unknown (treated as transient)
                self.log.warning("pod %s: %s", name, exc)
        return sorted(pods, key=node_index)

    def on_kill(self) -> None:
        if getattr(self, "job", None) is not None:
            KubernetesJobOperator.on_kill(self)
        else:
            KubernetesPodOperator.on_kill(self)


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
