"""The evaluation process: ``python -m cpt_tasks.evaluate.eval_worker FOLDER [ROLE ...]``.

``cpt-tasks evaluate`` writes one LLM-Foundry eval config per model into FOLDER (``eval-base.yaml``,
``eval-trained.yaml``) and starts this process there (LLM-Foundry copies each ICL task's examples into the
current directory). It runs LLM-Foundry's own ``evaluate()`` (the harness of ``scripts/eval/eval.py``) once per
model named (ROLE: ``base``, ``trained``; default both, in that order; the trained model alone when the base
model's results were kept), in this one process (one import of the libraries), and writes every metric with
what it averages over to ``FOLDER/worker-result.json``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cpt_tasks.documents import write_document
from cpt_tasks.documents.evaluate_docs import ROLES, EvalWorkerOutcome, MetricValue
from cpt_tasks.runs.workers import RESULT_FILE


def config_file(role: str) -> str:
    return f"eval-{role}.yaml"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    folder, roles = Path(args[0]), [r for r in ROLES if r in args[1:]] or list(ROLES)
    started = time.time()
    from llmfoundry.command_utils.eval import evaluate
    from omegaconf import OmegaConf as om
    from streaming.base.util import clean_stale_shared_memory

    from cpt_tasks.runs.shm_prefix import guard_shm_prefix

    guard_shm_prefix()

    seconds = {"imports": round(time.time() - started, 1)}
    metrics: dict[str, dict[str, MetricValue]] = {}
    for role in roles:
        began = time.time()
        clean_stale_shared_memory()
        trainers, _ = evaluate(om.load(folder / config_file(role)))
        metrics[role] = read_metrics(trainers[0])
        seconds[role] = round(time.time() - began, 1)
        print(f"[cpt-evaluate] {role} model evaluated in {seconds[role]:.0f}s", file=sys.stderr, flush=True)
    write_document(str(folder / RESULT_FILE), EvalWorkerOutcome(metrics=metrics, seconds=seconds))
    return 0


def read_metrics(trainer) -> dict[str, MetricValue]:
    """Every eval metric of a finished evaluation, keyed as LLM-Foundry logs it (``metrics/<evaluator>/<name>``),
    with its count: scored tokens for the loss metrics, examples (and correct ones) for ICL accuracies. Read per
    evaluator from ``state.eval_metrics`` (``eval_metric_values`` is keyed by metric name alone: the last
    evaluator would overwrite the others)."""
    found = {}
    for label, named in trainer.state.eval_metrics.items():
        for name, metric in named.items():
            count = _state(metric, "total_items", "total")
            if count == 0:
                continue  # an empty evaluator: no value to report
            found[f"metrics/{label}/{name}"] = MetricValue(value=float(metric.compute()), n=count,
                                                           correct=_state(metric, "correct"))
    return found


def _state(metric, *names: str) -> int | None:
    for name in names:
        value = getattr(metric, name, None)
        if value is not None:
            return int(value.item() if hasattr(value, "item") else value)
    return None


if __name__ == "__main__":
    sys.exit(main())
