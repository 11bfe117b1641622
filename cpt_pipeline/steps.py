"""What each step of ``cpt_dolmino`` runs: the ``cpt-tasks`` arguments (Jinja, rendered per run) and the
resources it asks for. Both runners take these unchanged (no Airflow import here).

Every pipeline run keeps its plan and verification report under ``<storage_root>/runs/<dag>/<run>/``; the
data lives under ``<storage_root>/data/<mix>/<fingerprint>/`` and the checkpoints under
``<storage_root>/checkpoints/<plan fingerprint>-<run>/`` (``cpt_tasks.layout``, rendered here as Jinja).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cpt_tasks.documents.plan_docs import PlanEntry
from cpt_tasks.documents.verify_docs import VerifySummary
from cpt_tasks.errors import EXIT_ALREADY_COMPLETE
from cpt_tasks.layout import PLAN_FILE, REPORT_JSON, checkpoints_root, data_root, run_dir
from cpt_pipeline.lineage import convert_lineage, evaluate_extras, evaluate_lineage, train_extras, \
    train_lineage, verify_extras, verify_lineage
from cpt_pipeline.wiring import Wiring

STORAGE_ROOT = "{{ params.storage_root }}"
SAFE_RUN_ID_FILTER = "cpt_safe"  # the DAG's Jinja filter: cpt_tasks.layout.safe_run_id
RUN_DIR = run_dir(STORAGE_ROOT, "{{ dag.dag_id }}", "{{ run_id | %s }}" % SAFE_RUN_ID_FILTER)
PLAN = f"{RUN_DIR}/{PLAN_FILE}"
REPORT = f"{RUN_DIR}/{REPORT_JSON}"
CHECKPOINTS = checkpoints_root(STORAGE_ROOT)
PLAN_CONFIG = ('{{ {"proportions": params.proportions, "subsets": params.subsets, "revision": params.revision, '
               '"text_field": params.text_field, "allow_short": params.allow_short, '
               '"convert_options": params.convert_options, "domain": params.domain, '
               '"domain_subset": params.domain_subset, "domain_text_field": params.domain_text_field, '
               '"domain_source_format": params.domain_source_format, '
               '"domain_name": params.domain_name, "replay_fraction": params.replay_fraction, '
               '"max_domain_epochs": params.max_domain_epochs} | tojson }}')
TRAIN_CONFIG = "{{ dict(params.train_options, max_duration=params.max_duration) | tojson }}"
EVALUATE_CONFIG = "{{ params.evaluate_options | tojson }}"


@dataclass(frozen=True)
class Step:
    """One step: its task id, the ``cpt-tasks`` argv, the pod it needs (the local runner ignores that), and its
    wiring (gate, Asset metadata, lineage: what the operator calls)."""

    task_id: str
    arguments: list[str]
    pod_kind: Literal["cpu", "gpu"]  # cpu: plan/convert/verify pods; gpu: the training pod (GPU nodes)
    cpu: str = "1"
    memory: str = "4Gi"
    gpus: str = "0"
    shm: str | None = None  # size of a memory-backed /dev/shm (training's data loaders and NCCL)
    nodes: str | None = None  # machines the step spans (training; Jinja); None: always one pod or process
    labels: dict[str, str] = field(default_factory=dict)
    mlflow: bool = False  # tracked: gets the MLflow store and credentials, and an "MLflow run" link
    wiring: Wiring = field(default_factory=Wiring)


def plan_step() -> Step:
    """Budgets, fingerprints and locations from the Params; writes the run's plan.json."""
    return Step("plan", [
        "plan", "--out_root", data_root(STORAGE_ROOT), "--output", PLAN,
        "--dataset", "{{ params.dataset }}", "--tokenizer", "{{ params.tokenizer }}", "--mix", "{{ params.mix }}",
        "--total_tokens", "{{ params.total_tokens }}", "--concat_tokens", "{{ params.concat_tokens }}",
        "--val_fraction", "{{ params.val_fraction }}", "--seed", "{{ params.seed }}",
        "--num_workers", "{{ params.convert_cpu }}", "--config", PLAN_CONFIG,
    ], pod_kind="cpu", cpu="1", memory="2Gi")


def convert_step() -> Step:
    """One planned subset (the arguments come per subset from :func:`convert_kwargs`)."""
    return Step("convert", [], pod_kind="cpu", cpu="{{ params.convert_cpu }}", memory="{{ params.convert_memory }}",
                wiring=Wiring(lineage=convert_lineage))


def convert_kwargs(entry: dict) -> dict:
    """The mapped arguments of one conversion, from one entry of the plan step's result (a PlanEntry)."""
    planned = PlanEntry.model_validate(entry)
    return {
        "arguments": ["convert-subset", "--plan", planned.plan, "--subset", planned.subset,
                      "--already_complete_exit", str(EXIT_ALREADY_COMPLETE)],
        "labels": {"app.kubernetes.io/name": "cpt-pipeline", "app.kubernetes.io/component": "convert",
                   "cpt-pipeline/subset": planned.subset},
    }


def verify_step() -> Step:
    """Every planned subset's data against the plan; the report lands beside the plan."""
    return Step("verify", [
        "verify", "--plan", PLAN, "--num_workers", "{{ params.convert_cpu }}", "--save_root", CHECKPOINTS,
    ], pod_kind="cpu", cpu="{{ params.convert_cpu }}", memory="{{ params.convert_memory }}",
        wiring=Wiring(extras=verify_extras, lineage=verify_lineage))


def train_step() -> Step:
    """Composer + LLM-Foundry on the verified mix, one process per GPU; resumes from the latest checkpoint. On
    more than one node the runner adds each node's rank and the rendezvous (``--nnodes --node_rank ...``)."""
    return Step("train", [
        "train", "--report", REPORT, "--model", "{{ params.model }}", "--save_root", CHECKPOINTS,
        "--run_id", "{{ run_id }}", "--nprocs", "{{ [params.gpus, 1] | max }}",
        "--global_batch_size", "{{ params.global_batch_size }}",
        "--device_microbatch_size", "{{ params.device_microbatch_size }}", "--config", TRAIN_CONFIG,
    ], pod_kind="gpu", cpu="{{ params.train_cpu }}", memory="{{ params.train_memory }}", gpus="{{ params.gpus }}",
        shm="{{ params.shm_size }}", nodes="{{ params.nodes }}", mlflow=True,
        wiring=Wiring(gate=train_gate, upstream="verify", extras=train_extras, lineage=train_lineage))


def train_gate(params: dict, verified: dict | None) -> str | None:
    """Why training is skipped for this run (None: train). ``verified`` is the verify step's result."""
    policy = params.get("train", "if_changed")
    if policy == "never":
        return "the run's Param train is 'never'"
    finished = VerifySummary.model_validate(verified).finished_training if verified else None
    if policy == "if_changed" and finished:
        return (f"this data (plan {finished.plan_fingerprint[:12]}) was already trained on: "
                f"{finished.run_folder}; trigger with train=always to train again")
    return None


def evaluate_step() -> Step:
    """The base and the trained model on the plan's held-out data and ICL tasks; the report lands beside the
    run's checkpoints. One process on one GPU when training had GPUs (the training pod's kind), else the CPU."""
    return Step("evaluate", [
        "evaluate", "--report", REPORT, "--save_root", CHECKPOINTS, "--run_id", "{{ run_id }}",
        "--icl_tasks", "{{ params.icl_tasks }}", "--config", EVALUATE_CONFIG,
    ], pod_kind="gpu", cpu="{{ params.train_cpu }}", memory="{{ params.train_memory }}",
        gpus="{{ [params.gpus, 1] | min }}", shm="{{ params.shm_size }}", mlflow=True,
        wiring=Wiring(gate=evaluate_gate, upstream="train", extras=evaluate_extras, lineage=evaluate_lineage))


def evaluate_gate(params: dict, trained: dict | None) -> str | None:
    """Why evaluation is skipped for this run (None: evaluate). ``trained`` is the train step's result (None:
    training was skipped)."""
    policy = params.get("evaluate", "if_trained")
    if policy == "never":
        return "the run's Param evaluate is 'never'"
    if policy == "if_trained" and trained is None:
        return ("training was skipped, so there is no new model to evaluate; trigger with evaluate=always to "
                "evaluate this plan's newest finished run")
    return None
