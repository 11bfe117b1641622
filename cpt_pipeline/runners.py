"""Turn a :class:`~cpt_pipeline.steps.Step` into the operator of the configured runner.

Kubernetes (``CPT_RUNNER=kubernetes``): a hardened pod (non-root, no privilege escalation, all capabilities
dropped, read-only root filesystem with writable /tmp and /cache, RuntimeDefault seccomp, no service-account
token), object-storage, Hub and MLflow credentials only by Secret reference, CPU-only conversions and a GPU
training pod with a memory-backed /dev/shm; training on more than one node is an Indexed Job of such pods
(``cpt_pipeline.indexed_job``). Podman (``CPT_RUNNER=podman``): the same pod, run on this machine with
``podman kube play`` (``cpt_pipeline.podman_runner``; one node only). Local (``CPT_RUNNER=local``): the same argv
as a process, one per node.
The task id, mapping, retries, assets, gates and the tracked steps' "MLflow run" link do not depend on the runner.
"""

from __future__ import annotations

from kubernetes.client import models as k8s

from cpt_tasks.errors import EXIT_ALREADY_COMPLETE
from cpt_pipeline.operators import LocalStepOperator, MlflowRunLink, StepPodOperator
from cpt_pipeline.params import step_timeout
from cpt_pipeline.settings import Deployment
from cpt_pipeline.steps import Step

UID = 1000  # the tasks image's non-root user (docker/tasks/Dockerfile)
RESULT_FILE = "/airflow/xcom/return.json"  # read back by the provider's XCom sidecar


def make_operator(step: Step, deployment: Deployment, *, partial: bool = False, **kwargs):
    """The step's operator (or its ``.partial(...)`` for a mapped step); ``kwargs`` go to the operator."""
    if deployment.runner == "local":
        cls, options = LocalStepOperator, {"tasks_bin": deployment.tasks_bin}
        if step.pod.nodes is not None:
            options.update(nodes=step.pod.nodes, shm_size=step.pod.shm)
        if step.pod.mlflow:
            options["env_vars"] = deployment.mlflow_env()
    elif deployment.runner == "podman":
        from cpt_pipeline.podman_runner import PodmanStepOperator

        cls, options = PodmanStepOperator, {**pod_options(step, deployment), "podman_dir": deployment.podman_dir}
        if step.pod.nodes is not None:
            options["nodes"] = step.pod.nodes
    elif step.pod.nodes is not None:
        from cpt_pipeline.indexed_job import StepTrainOperator

        cls, options = StepTrainOperator, {**pod_options(step, deployment), "nodes": step.pod.nodes,
                                           "node_subdomain": deployment.train_subdomain}
    else:
        cls, options = StepPodOperator, pod_options(step, deployment)
    options["wiring"] = step.wiring
    options["execution_timeout"] = step_timeout(step.task_id)  # the Param's default; each try applies the run's
    if partial:
        options.pop("labels", None)  # mapped: each instance's labels come with its arguments (convert_kwargs)
    else:
        options["arguments"] = step.arguments
    options.update(kwargs)
    if partial:
        return cls.partial(task_id=step.task_id, **options)
    operator = cls(task_id=step.task_id, **options)
    if step.pod.mlflow:
        operator.operator_extra_links = (MlflowRunLink(),)  # only where there is a run to link to
    return operator


def _restricted() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(allow_privilege_escalation=False, privileged=False, run_as_non_root=True,
                                 read_only_root_filesystem=True, capabilities=k8s.V1Capabilities(drop=["ALL"]))


def _secret_env(name: str, secret: str, key: str, optional: bool) -> k8s.V1EnvVar:
    ref = k8s.V1SecretKeySelector(name=secret, key=key, optional=optional)
    return k8s.V1EnvVar(name=name, value_from=k8s.V1EnvVarSource(secret_key_ref=ref))


def pod_env(step: Step, deployment: Deployment) -> list[k8s.V1EnvVar]:
    """Caches on the /cache volume, the result file, and credentials by Secret reference only. Training's
    scratch (staged model, local checkpoint copies before upload) goes to /cache too: it outgrows /tmp."""
    plain = {"HOME": "/tmp/home", "TMPDIR": "/cache" if step.pod.kind == "gpu" else "/tmp", "HF_HOME": "/cache/hf", "CPT_CACHE_DIR": "/cache/cpt",
             "XDG_CACHE_HOME": "/cache/xdg", "PYTHONUNBUFFERED": "1", "CPT_RESULT_FILE": RESULT_FILE}
    env = [k8s.V1EnvVar(name=k, value=v) for k, v in plain.items()]
    s3 = deployment.storage_secret
    env += [_secret_env("AWS_ACCESS_KEY_ID", s3, "AWS_ACCESS_KEY_ID", optional=True),
            _secret_env("AWS_SECRET_ACCESS_KEY", s3, "AWS_SECRET_ACCESS_KEY", optional=True),
            _secret_env("S3_ENDPOINT_URL", s3, "S3_ENDPOINT_URL", optional=True),
            _secret_env("HF_TOKEN", deployment.hf_secret, "HF_TOKEN", optional=True)]
    if step.pod.mlflow:
        env += mlflow_env(deployment)
    return env


def mlflow_env(deployment: Deployment) -> list[k8s.V1EnvVar]:
    """A tracked step's MLflow store (when one is set), the Airflow context its runs are tagged with (Jinja,
    rendered per try), and the store's credentials by Secret reference."""
    plain = {k: v for k, v in deployment.mlflow_env().items() if v}
    plain.update({"AIRFLOW_CTX_DAG_ID": "{{ dag.dag_id }}", "AIRFLOW_CTX_DAG_RUN_ID": "{{ run_id }}",
                  "AIRFLOW_CTX_TASK_ID": "{{ task.task_id }}", "AIRFLOW_CTX_TRY_NUMBER": "{{ ti.try_number }}"})
    env = [k8s.V1EnvVar(name=k, value=v) for k, v in plain.items()]
    return env + [_secret_env(key, deployment.mlflow_secret, key, optional=True)
                  for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")]


def pod_volumes(step: Step, deployment: Deployment) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """/tmp (scratch), /cache (PVC or per-pod), and /dev/shm in RAM for training."""
    if deployment.cache_pvc:
        cache = k8s.V1Volume(name="cache", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
            claim_name=deployment.cache_pvc))
    else:
        cache = k8s.V1Volume(name="cache", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="200Gi"))
    volumes = [k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="20Gi")), cache]
    mounts = [k8s.V1VolumeMount(name="tmp", mount_path="/tmp"), k8s.V1VolumeMount(name="cache", mount_path="/cache")]
    if step.pod.shm:
        volumes.append(k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory",
                                                                                       size_limit=step.pod.shm)))
        mounts.append(k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"))
    return volumes, mounts


def pod_options(step: Step, deployment: Deployment) -> dict:
    """KubernetesPodOperator arguments for ``step`` (see the module docstring for the choices)."""
    train = step.pod.kind == "gpu"
    limits = {"memory": step.pod.memory}
    if train:
        limits["nvidia.com/gpu"] = step.pod.gpus  # no CPU limit on the trainer: throttling stalls the GPUs
    else:
        limits["cpu"] = step.pod.cpu
    volumes, mounts = pod_volumes(step, deployment)
    options = {
        "namespace": deployment.namespace, "image": deployment.image, "image_pull_policy": "IfNotPresent",
        "cmds": ["cpt-tasks"], "name": f"cpt-{step.task_id}", "random_name_suffix": True,
        "labels": {"app.kubernetes.io/name": "cpt-pipeline", "app.kubernetes.io/component": step.task_id,
                   **step.labels},
        "env_vars": pod_env(step, deployment), "volumes": volumes, "volume_mounts": mounts,
        "container_resources": k8s.V1ResourceRequirements(requests={"cpu": step.pod.cpu, "memory": step.pod.memory},
                                                          limits=limits),
        "service_account_name": deployment.train_service_account if train else deployment.convert_service_account,
        "automount_service_account_token": False,
        "security_context": k8s.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=UID, run_as_group=UID, fs_group=UID,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
        "container_security_context": _restricted(),
        "xcom_sidecar_container_security_context": _restricted(),
        "do_xcom_push": True,
        # Failed pods stay for `kubectl logs/describe`; a finished container holds no CPU or GPU.
        "on_finish_action": "delete_succeeded_pod",
        # A worker restart reattaches to the running pod instead of starting a second trainer/converter
        # writing the same output.
        "durable": True,
        "get_logs": True, "log_events_on_failure": True,
    }
    if train:
        options.update({
            "node_selector": deployment.gpu_node_selector or None,
            "tolerations": [k8s.V1Toleration(**t) for t in deployment.gpu_tolerations] or None,
            # GPU nodes may need to scale up; a pod that waits for one is not a failure.
            "startup_timeout_seconds": 1800,
            # Hours-long: wait in the triggerer, not in a worker slot.
            "deferrable": True, "logging_interval": 60,
            # SIGTERM lets Composer finish writing; the retry resumes from the last complete checkpoint.
            "termination_grace_period": 120,
        })
    else:
        options["skip_on_exit_code"] = EXIT_ALREADY_COMPLETE
    return options
