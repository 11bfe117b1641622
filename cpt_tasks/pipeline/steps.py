"""What each step of ``cpt_dolmino`` runs: the ``cpt-tasks`` arguments (Jinja, rendered per run) and the
resources it asks for. Both runners take these unchanged (no Airflow import here).

Every pipeline run keeps its plan and verification report under ``<storage_root>/runs/<dag>/<run>/``; the
data lives under ``<storage_root>/data/<mix>/<fingerprint>/`` and the checkpoints under
``<storage_root>/checkpoints/<plan fingerprint>-<run>/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

UP_TO_DATE_EXIT = 99  # convert-subset's status for "already converted": the task is marked skipped
RUN_DIR = "{{ params.storage_root }}/runs/{{ dag.dag_id }}/{{ run_id | cpt_safe }}"
PLAN = RUN_DIR + "/plan.json"
REPORT = RUN_DIR + "/verify-report.json"
CHECKPOINTS = "{{ params.storage_root }}/checkpoints"
PLAN_CONFIG = ('{{ {"proportions": params.proportions, "subsets": params.subsets, "revision": params.revision, '
               '"allow_short": params.allow_short} | tojson }}')
TRAIN_CONFIG = "{{ dict(params.train_options, max_duration=params.max_duration) | tojson }}"


@dataclass(frozen=True)
class Step:
    """One step: its task id, the ``cpt-tasks`` argv, and the pod it needs (the local runner ignores that)."""

    task_id: str
    arguments: list[str]
    role: str  # "convert" (plan/convert/verify: CPU pods) or "train" (the GPU pod)
    cpu: str = "1"
    memory: str = "4Gi"
    gpus: str = "0"
    shm: str | None = None  # size of a memory-backed /dev/shm (training's data loaders and NCCL)
    labels: dict[str, str] = field(default_factory=dict)


def safe_name(value: str) -> str:
    """A run id as a path segment: letters, digits, '.', '_' and '-' only (Jinja filter ``cpt_safe``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-") or "run"


def plan_step() -> Step:
    """Budgets, fingerprints and locations from the Params; writes the run's plan.json."""
    return Step("plan", [
        "plan", "--out_root", "{{ params.storage_root }}/data", "--output", PLAN,
        "--dataset", "{{ params.dataset }}", "--tokenizer", "{{ params.tokenizer }}", "--mix", "{{ params.mix }}",
        "--total_tokens", "{{ params.total_tokens }}", "--concat_tokens", "{{ params.concat_tokens }}",
        "--val_fraction", "{{ params.val_fraction }}", "--seed", "{{ params.seed }}",
        "--num_workers", "{{ params.convert_cpu }}", "--config", PLAN_CONFIG,
    ], role="convert", cpu="1", memory="2Gi")


def convert_step() -> Step:
    """One planned subset (the arguments come per subset from :func:`convert_kwargs`)."""
    return Step("convert", [], role="convert", cpu="{{ params.convert_cpu }}", memory="{{ params.convert_memory }}")


def convert_kwargs(entry: dict) -> dict:
    """The mapped arguments of one conversion, from one entry of the plan step's result."""
    return {
        "arguments": ["convert-subset", "--plan", entry["plan"], "--subset", entry["subset"],
                      "--up_to_date_exit", str(UP_TO_DATE_EXIT)],
        "labels": {"app.kubernetes.io/name": "cpt-pipeline", "app.kubernetes.io/component": "convert",
                   "cpt-pipeline/subset": entry["subset"]},
    }


def verify_step() -> Step:
    """Every planned subset's data against the plan; the report lands beside the plan."""
    return Step("verify", [
        "verify", "--plan", PLAN, "--num_workers", "{{ params.convert_cpu }}", "--save_root", CHECKPOINTS,
    ], role="convert", cpu="{{ params.convert_cpu }}", memory="{{ params.convert_memory }}")


def train_step() -> Step:
    """Composer + LLM-Foundry on the verified mix, one process per GPU; resumes from the latest checkpoint."""
    return Step("train", [
        "train", "--report", REPORT, "--model", "{{ params.model }}", "--save_root", CHECKPOINTS,
        "--run_id", "{{ run_id }}", "--nprocs", "{{ [params.gpus, 1] | max }}",
        "--global_batch_size", "{{ params.global_batch_size }}",
        "--device_microbatch_size", "{{ params.device_microbatch_size }}", "--config", TRAIN_CONFIG,
    ], role="train", cpu="{{ params.train_cpu }}", memory="{{ params.train_memory }}", gpus="{{ params.gpus }}",
        shm="{{ params.shm_size }}")


def train_gate(params: dict, verified: dict | None) -> str | None:
    """Why training is skipped for this run (None: train). ``verified`` is the verify step's result."""
    policy = params.get("train", "if_changed")
    if policy == "never":
        return "the run's Param train is 'never'"
    finished = (verified or {}).get("finished_training")
    if policy == "if_changed" and finished:
        return (f"this data (plan {str(finished.get('plan_fingerprint', ''))[:12]}) was already trained on: "
                f"{finished.get('run_folder')}; trigger with train=always to train again")
    return None
