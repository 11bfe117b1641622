"""``replay_fraction: "recommended"``: the replay fraction the newest replay sweep of this corpus recommends.

The plan resolves the domain's source, computes its ``corpus_key`` (:mod:`cpt_tasks.plan.corpus_identity`: the
corpus with this mix and tokenizer) and reads the sweep pointer ``<sweeps_root>/<corpus_key>.json`` that the
sweep's recommend step leaves (local or object storage). No pointer, a pointer without a recommendation, or one
that is not this corpus's, stops the plan (exit 2) saying what to run instead.
"""

from __future__ import annotations

from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.documents import parse_document
from cpt_tasks.documents.plan_docs import SweepRef
from cpt_tasks.documents.sweep_docs import SweepPointer
from cpt_tasks.errors import UserError
from cpt_tasks.layout import sweep_pointer
from cpt_tasks.storage import read_bytes

OPTION = "--replay_fraction recommended"
SWEEP_DAG = "cpt_replay_sweep"


def check_recommended_options(cfg: PlanConfig) -> None:
    """UserError when replay_fraction 'recommended' lacks --domain or --sweeps_root."""
    if not cfg.domain:
        raise UserError(f"{OPTION}: a replay sweep recommends the replay beside your corpus; give --domain (the "
                        "corpus it measured) too, or leave replay_fraction out (no domain: the mix alone)")
    if not cfg.sweeps_root:
        raise UserError(f"{OPTION}: give --sweeps_root, where replay sweeps keep their pointers (the DAG sets it: "
                        "<storage_root>/sweeps), or give --replay_fraction as a number")


def read_recommendation(cfg: PlanConfig, key: str, mix: str, tokenizer: str) -> SweepRef:
    """Where the recommended fraction comes from: the sweep pointer of ``key`` (the corpus with ``mix`` and
    ``tokenizer``, as the plan names them); UserError saying what to run when there is no usable one."""
    location = sweep_pointer(cfg.sweeps_root, key)
    data = read_bytes(location)
    if data is None:
        raise UserError(
            f"{OPTION}: no replay sweep exists for this corpus with this mix and tokenizer (corpus key {key}: "
            f"--domain {cfg.domain}{_subset(cfg)}, text field {cfg.domain_text_field}, mix {mix}, tokenizer "
            f"{tokenizer}; looked for {location}). Run the DAG {SWEEP_DAG} with the same domain, mix and tokenizer "
            "(locally: make demo-sweep), or give --replay_fraction as a number")
    pointer = parse_document(data, SweepPointer, f"{OPTION}: the sweep pointer {location}")
    if pointer.corpus_key != key:
        raise UserError(f"{OPTION}: the sweep pointer {location} names corpus key {pointer.corpus_key}, not this "
                        f"corpus's {key} (copied or edited by hand?); run the DAG {SWEEP_DAG} again, or give "
                        "--replay_fraction as a number")
    if pointer.status != "recommended":
        raise UserError(f"{OPTION}: the replay sweep {pointer.sweep_run} recommends no replay fraction for this "
                        f"corpus ({pointer.status}): \"{pointer.reason}\" (report {pointer.report}). Give "
                        f"--replay_fraction as a number, or run the DAG {SWEEP_DAG} again (more tokens per proxy "
                        "run, other fractions or another forgetting tolerance)")
    if pointer.fraction is None or not 0 <= pointer.fraction < 1:
        raise UserError(f"{OPTION}: the sweep pointer {location} recommends the replay fraction {pointer.fraction}, "
                        f"not one in [0, 1); run the DAG {SWEEP_DAG} again, or give --replay_fraction as a number")
    return SweepRef(pointer=location, report=pointer.report, fraction=pointer.fraction, sweep_run=pointer.sweep_run)


def _subset(cfg: PlanConfig) -> str:
    return f" --domain_subset {cfg.domain_subset}" if cfg.domain_subset else ""
