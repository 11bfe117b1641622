"""The pipeline's DAGs as data: which steps each runs, what it calls the Params its jobs take, and what it sets
beyond the registry (``cpt_tasks.jobs``). ``cpt_dolmino`` runs every step once; ``cpt_replay_sweep`` runs the same
steps on proxy runs, one per replay fraction (train and evaluate mapped over the fractions), then ``recommend``.
No Airflow import here."""

from __future__ import annotations

from dataclasses import dataclass, field

# The proxy runs' defaults. A proxy shares the big run's tokenizer (Llama 3: the Llama 3.2 1B family). RegMix (Liu
# et al. 2024) predicts mixtures from proxies trained on 1B tokens each; at 1B tokens per fraction, the default
# sweep (5 fractions) on a 1B model costs about 5 x 1e9 x 1.2e9 x 6 = 3.6e19 FLOPs, about 1.5% of the reference big
# run (50B tokens on Llama 3.1 8B: 50e9 x 8e9 x 6 = 2.4e21).
DEFAULT_PROXY_MODEL = "meta-llama/Llama-3.2-1B"
DEFAULT_PROXY_TOKENS = 1_000_000_000
DEFAULT_SWEEP_FRACTIONS = (0.0, 0.05, 0.1, 0.25, 0.5)
PROXY_RUN_ID = "{{ proxy_run_id }}"  # one proxy run's id (cpt_tasks.layout.sweep_run_id), set per fraction
FRACTION = "{{ fraction }}"  # one proxy run's replay fraction, set per fraction


@dataclass(frozen=True)
class DagShape:
    """One DAG of the pipeline: its id, its steps, its names for Params (``renames``: Param -> its name here),
    the Params it leaves out, and the fields it sets beyond the registry (``also_set``: step -> field -> Jinja)."""

    dag_id: str
    steps: tuple[str, ...]
    renames: dict[str, str] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    also_set: dict[str, dict[str, str]] = field(default_factory=dict)
    mapped: tuple[str, ...] = ("convert",)  # steps with one task per planned subset or per fraction


DOLMINO = DagShape("cpt_dolmino", ("plan", "convert", "verify", "train", "evaluate"))
REPLAY_SWEEP = DagShape(
    "cpt_replay_sweep", ("plan", "convert", "verify", "train", "evaluate", "recommend"),
    renames={"total_tokens": "proxy_tokens", "model": "proxy_model"},
    drop=("replay_fraction", "train", "evaluate"),  # every proxy run trains and is evaluated
    also_set={"plan": {"sweep_fractions": "{{ params.sweep_fractions }}"},
              "train": {"run_id": PROXY_RUN_ID, "sweep_fraction": FRACTION},
              "evaluate": {"run_id": PROXY_RUN_ID}},
    mapped=("convert", "train", "evaluate"))
SHAPES = (DOLMINO, REPLAY_SWEEP)


def set_by_some_dag(step: str) -> set[str]:
    """The fields of ``step``'s job that some DAG sets beyond the registry (no options Param may hold them)."""
    return {name for shape in SHAPES for name in shape.also_set.get(step, {})}
