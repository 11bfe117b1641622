"""What each step of ``cpt_dolmino`` runs, generated from the registry (``cpt_tasks.jobs``): the ``cpt-tasks``
arguments (one ``--config`` object, Jinja, rendered per run), the resources it asks for, and its wiring. Both
runners take these unchanged (no Airflow import here).

Every pipeline run keeps its plan and verification report under ``<storage_root>/runs/<dag>/<run>/``; the
data lives under ``<storage_root>/data/<mix>/<fingerprint>/`` and the checkpoints under
``<storage_root>/checkpoints/<plan fingerprint>-<run>/`` (``cpt_tasks.layout``, rendered here as Jinja).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from cpt_tasks.documents.plan_docs import PlanEntry
from cpt_tasks.documents.verify_docs import VerifySummary
from cpt_tasks.errors import EXIT_ALREADY_COMPLETE
from cpt_tasks.jobs import Pod, step_job
from cpt_pipeline.dag_shapes import DOLMINO, REPLAY_SWEEP, DagShape
from cpt_pipeline.lineage import convert_lineage, evaluate_extras, evaluate_lineage, plan_lineage, \
    recommend_extras, recommend_lineage, train_extras, train_lineage, verify_extras, verify_lineage
from cpt_pipeline.wiring import Wiring


@dataclass(frozen=True)
class Step:
    """One step: its task id, the ``cpt-tasks`` argv, the pod it needs (the local runner ignores that), its pods'
    labels, and its wiring (gate, Asset metadata, lineage: what the operator calls)."""

    task_id: str
    arguments: list[str]
    pod: Pod
    labels: dict[str, str] = field(default_factory=dict)
    wiring: Wiring = field(default_factory=Wiring)


def step(task_id: str, shape: DagShape = DOLMINO) -> Step:
    """The step ``task_id`` of the DAG ``shape``, from the registry's job that it runs: its argv (``<job> --config
    '<JSON rendered per run>'``; a mapped step's comes per task: :func:`convert_kwargs`, :func:`proxy_runs`), its
    pod and its wiring."""
    job = step_job(task_id)
    arguments = [] if task_id in shape.mapped else job.arguments(shape.renames, shape.also_set.get(task_id), shape.drop)
    wiring = WIRING.get((shape.dag_id, task_id), WIRING.get(task_id, Wiring()))
    return Step(task_id, arguments, job.pod, wiring=wiring)


def proxy_templates(shape: DagShape = REPLAY_SWEEP) -> dict[str, list[str]]:
    """The argv of a proxy run's train and evaluate steps, as templates of the run and of ``fraction`` and
    ``proxy_run_id`` (rendered once per fraction by the sweep's proxy-runs task)."""
    return {task_id: step_job(task_id).arguments(shape.renames, shape.also_set.get(task_id), shape.drop)
            for task_id in ("train", "evaluate")}


def proxy_kwargs(task_id: str) -> Callable[[dict], dict]:
    """The mapped arguments of one proxy run's ``task_id`` step, from one entry of the proxy-runs task's result."""

    def kwargs(entry: dict) -> dict:
        return {"arguments": entry[task_id],
                "labels": {"app.kubernetes.io/name": "cpt-pipeline", "app.kubernetes.io/component": task_id,
                           "cpt-pipeline/replay-fraction": f"{entry['fraction']:g}"}}

    return kwargs


def proxy_train_kwargs(entry: dict) -> dict:
    """One proxy run's training (mapped over the fractions)."""
    return proxy_kwargs("train")(entry)


def proxy_evaluate_kwargs(entry: dict) -> dict:
    """One proxy run's evaluation (mapped over the fractions)."""
    return proxy_kwargs("evaluate")(entry)


def convert_kwargs(entry: dict) -> dict:
    """The mapped arguments of one conversion (a subset, or one part of one), from one entry of the plan step's
    result (a PlanEntry)."""
    planned = PlanEntry.model_validate(entry)
    config = {"plan": planned.plan, "subset": planned.subset, "already_complete_exit": EXIT_ALREADY_COMPLETE}
    labels = {"app.kubernetes.io/name": "cpt-pipeline", "app.kubernetes.io/component": "convert",
              "cpt-pipeline/subset": planned.subset}
    if planned.parts > 1:  # one part of a subset converted in parts: the task is labelled <subset>/<part>
        config["part"] = planned.part
        labels["cpt-pipeline/part"] = str(planned.part)
    return {"arguments": [step_job("convert").name, "--config", json.dumps(config)], "labels": labels}


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


# What a step brings to its operator besides its command (gate, Assets' metadata, lineage); none by default. A
# (dag, step) entry is that DAG's own: the sweep's proxy runs always train and are evaluated, and have no Assets.
WIRING = {
    (REPLAY_SWEEP.dag_id, "train"): Wiring(upstream="verify", lineage=train_lineage),
    (REPLAY_SWEEP.dag_id, "evaluate"): Wiring(lineage=evaluate_lineage),
    "plan": Wiring(lineage=plan_lineage),
    "recommend": Wiring(extras=recommend_extras, lineage=recommend_lineage),
    "convert": Wiring(lineage=convert_lineage),
    "verify": Wiring(extras=verify_extras, lineage=verify_lineage),
    "train": Wiring(gate=train_gate, upstream="verify", extras=train_extras, lineage=train_lineage),
    "evaluate": Wiring(gate=evaluate_gate, upstream="train", extras=evaluate_extras, lineage=evaluate_lineage),
}
