"""Deployment settings the DAG reads from its environment once, at parse time (no Airflow import).

The deployed Airflow image sets ``CPT_RUNNER=kubernetes`` and the rest through the Helm values
(``helm/cpt-pipeline/values-airflow.yaml``); the demo and CI set ``CPT_RUNNER=local``, ``make demo-pods``
``CPT_RUNNER=podman``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

RUNNERS = ("kubernetes", "local", "podman")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _json_env(name: str, default: object, kind: type) -> object:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: invalid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{name}: expected a JSON {kind.__name__}, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Deployment:
    """Where and how the steps run; every field comes from a ``CPT_*`` environment variable."""

    runner: str = "kubernetes"  # CPT_RUNNER: kubernetes (pods), local (processes with the tasks env) or podman
    # (the kubernetes runner's pods, run here with `podman kube play`: cpt_pipeline/podman_runner.py)
    namespace: str = "cpt"  # CPT_NAMESPACE: the pods' namespace
    image: str = "ghcr.io/cpt-pipeline/cpt-tasks:0.1.0"  # CPT_TASKS_IMAGE: the tasks image the pods run
    storage_root: str = "s3://cpt-pipeline"  # CPT_STORAGE_ROOT: default of the storage_root Param
    storage_secret: str = "cpt-object-storage"  # CPT_STORAGE_SECRET: Secret with AWS_* keys (by reference)
    hf_secret: str = "cpt-hf-token"  # CPT_HF_SECRET: Secret with HF_TOKEN (by reference)
    cache_pvc: str = ""  # CPT_CACHE_PVC: PVC for /cache; empty = an ephemeral volume per pod
    convert_service_account: str = "cpt-convert"  # CPT_CONVERT_SA: plan, convert and verify pods
    train_service_account: str = "cpt-train"  # CPT_TRAIN_SA: the training pod
    # CPT_TRAIN_SUBDOMAIN: the chart's headless Service of the multi-node training pods (their subdomain);
    # "" when the chart's trainNodes is off: then a run with nodes > 1 fails at once
    train_subdomain: str = "cpt-train-nodes"
    gpu_node_selector: dict = field(default_factory=dict)  # CPT_GPU_NODE_SELECTOR (JSON object)
    gpu_tolerations: list = field(default_factory=list)  # CPT_GPU_TOLERATIONS (JSON list)
    schedule: str | None = "@weekly"  # CPT_SCHEDULE: the refresh schedule; "none" disables it
    retries: int = 3  # CPT_RETRIES: retries of every pod step (exponential backoff)
    tasks_bin: str = str(REPO_ROOT / ".venv" / "bin" / "cpt-tasks")  # CPT_TASKS_BIN: local runner's CLI
    param_defaults: str = ""  # CPT_PARAM_DEFAULTS: JSON file overriding Param defaults (the demo's)
    mlflow_tracking_uri: str = ""  # CPT_MLFLOW_TRACKING_URI (else MLFLOW_TRACKING_URI): train's and evaluate's
    # MLflow store, e.g. http://mlflow.mlflow.svc:5000; empty: not tracked
    mlflow_secret: str = "cpt-mlflow"  # CPT_MLFLOW_SECRET: Secret with MLFLOW_TRACKING_USERNAME/_PASSWORD/_TOKEN
    mlflow_ui_url: str = ""  # CPT_MLFLOW_UI_URL: the MLflow UI people open (the "MLflow run" links); empty: the
    # tracking URI when it is http(s), else http://127.0.0.1:5000 (make mlflow)
    # CPT_MAX_ACTIVE_CONVERT: convert tasks (subsets and parts) of one run that may run at once: the cluster's CPU
    # pods for conversion (a 50B plan in 2B-token parts is ~27 tasks: one wave on 32 pods of 8 cores)
    max_active_convert: int = 32
    # CPT_PODMAN_DIR: podman runner's folder: pods/ (every manifest it submitted) and xcom/ (each pod's XCom)
    podman_dir: str = str(REPO_ROOT / ".cpt" / "podman")

    def __post_init__(self) -> None:
        if self.runner not in RUNNERS:
            raise ValueError(f"CPT_RUNNER={self.runner!r}: expected one of {', '.join(RUNNERS)}")
        if self.max_active_convert < 1:
            raise ValueError(f"CPT_MAX_ACTIVE_CONVERT={self.max_active_convert}: expected 1 or more")

    @classmethod
    def from_env(cls) -> Deployment:
        """The settings from ``os.environ``; unset variables keep the defaults above."""
        env = os.environ
        base = cls()
        schedule = env.get("CPT_SCHEDULE", base.schedule)
        return cls(
            runner=env.get("CPT_RUNNER", base.runner).strip().lower(),
            namespace=env.get("CPT_NAMESPACE", base.namespace),
            image=env.get("CPT_TASKS_IMAGE", base.image),
            storage_root=env.get("CPT_STORAGE_ROOT", base.storage_root),
            storage_secret=env.get("CPT_STORAGE_SECRET", base.storage_secret),
            hf_secret=env.get("CPT_HF_SECRET", base.hf_secret),
            cache_pvc=env.get("CPT_CACHE_PVC", base.cache_pvc),
            convert_service_account=env.get("CPT_CONVERT_SA", base.convert_service_account),
            train_service_account=env.get("CPT_TRAIN_SA", base.train_service_account),
            train_subdomain=env.get("CPT_TRAIN_SUBDOMAIN", base.train_subdomain),
            gpu_node_selector=_json_env("CPT_GPU_NODE_SELECTOR", {}, dict),
            gpu_tolerations=_json_env("CPT_GPU_TOLERATIONS", [], list),
            schedule=None if (schedule or "").lower() in ("", "none", "null") else schedule,
            retries=int(env.get("CPT_RETRIES", base.retries)),
            tasks_bin=env.get("CPT_TASKS_BIN", base.tasks_bin),
            param_defaults=env.get("CPT_PARAM_DEFAULTS", base.param_defaults),
            mlflow_tracking_uri=env.get("CPT_MLFLOW_TRACKING_URI", env.get("MLFLOW_TRACKING_URI", "")).strip(),
            mlflow_secret=env.get("CPT_MLFLOW_SECRET", base.mlflow_secret),
            mlflow_ui_url=env.get("CPT_MLFLOW_UI_URL", base.mlflow_ui_url).strip(),
            max_active_convert=int(env.get("CPT_MAX_ACTIVE_CONVERT", base.max_active_convert)),
            podman_dir=env.get("CPT_PODMAN_DIR") or str(Path(env.get("CPT_HOME") or REPO_ROOT / ".cpt") / "podman"),
        )

    def mlflow_env(self) -> dict[str, str]:
        """The plain (non-secret) environment of a tracked step: the store and the UI for its links."""
        env = {"MLFLOW_TRACKING_URI": self.mlflow_tracking_uri}
        if self.mlflow_ui_url:
            env["CPT_MLFLOW_UI_URL"] = self.mlflow_ui_url
        return env

    def default_args(self) -> dict:
        """Every task's retry policy: ``retries`` tries more, backing off exponentially from 1 minute to 30."""
        from datetime import timedelta

        return {"retries": self.retries, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True,
                "max_retry_delay": timedelta(minutes=30)}

    def load_param_defaults(self) -> dict:
        """The Param defaults file's values ({} when unset); a missing or bad file is an error."""
        if not self.param_defaults:
            return {}
        path = Path(self.param_defaults)
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"CPT_PARAM_DEFAULTS={path}: {exc}") from None
        if not isinstance(values, dict):
            raise ValueError(f"CPT_PARAM_DEFAULTS={path}: expected a JSON object of Param names to values")
        return values
