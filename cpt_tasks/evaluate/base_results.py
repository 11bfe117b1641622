"""The base model's results, kept and reused: every evaluation of runs that started from the same base model
and are evaluated on the same held-out data, tasks and settings (a replay sweep's proxy runs; a run trained
again) would otherwise evaluate that base model again for the same numbers.

After its evaluation process finishes, ``cpt-tasks evaluate`` writes the base model's metrics to
``<save root>/base-evals/<key[:16]>/base-eval.json`` (atomically; a strict ``BaseEvalResults``), beside the
training runs. ``key`` is the sha256 of exactly what determines those numbers:

- the base model: its hub commit (immutable), else the sha256 of each top-level config/weights file;
- the tokenizer the data was made with (pinned by its files' hash) and the framing;
- the held-out data: each subset's val split location, its conversion's fingerprint and val tokens;
- the ICL tasks: each task's keys and its examples file's sha256 (or its URI when it has none);
- the base model's LLM-Foundry eval config itself, paths of this evaluation's scratch left out (seed,
  precision as resolved, batch size and counts, sequence length, loaders), the device kind;
- the code: cpt-pipeline's and the libraries' versions (``code_version``).

A later evaluation with the same key reads the file (a missing, invalid or other key's file is never trusted:
the base model is evaluated again and the file rewritten), evaluates the trained model alone, and says so in
its log and in the report's ``base_reused``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cpt_tasks.cache import sha256_file_cached
from cpt_tasks.documents import write_document
from cpt_tasks.documents.evaluate_docs import ROLES, BaseEvalResults, EvalWorkerOutcome, MetricValue
from cpt_tasks.documents.train_docs import MlflowRun
from cpt_tasks.evaluate.eval_yaml import build_eval_yaml
from cpt_tasks.evaluate.evaluation import Evaluation
from cpt_tasks.evaluate.tasks import TaskList
from cpt_tasks.layout import EVAL_JSON, VAL
from cpt_tasks.runs.completion import find_complete
from cpt_tasks.runs.versions import code_version
from cpt_tasks.storage import join
from cpt_tasks.tracking.mlflow_store import Tracker

BASE_EVALS_DIR = "base-evals"  # under the training runs' save root
BASE_EVAL_JSON = "base-eval.json"
MODEL_FILES = (".json", ".safetensors", ".bin")  # config, weights and their index: what the numbers depend on


@dataclass
class KeptBase:
    """The base model's kept results for this evaluation's key (``found``: reuse them) and where they live."""

    key: str
    inputs: dict
    location: str
    found: EvalWorkerOutcome | None

    @classmethod
    def look_up(cls, ev: Evaluation, model: str, say: Callable[[str], None]) -> KeptBase:
        """This evaluation's key and the results kept for it, if any (said in the log)."""
        inputs = base_inputs(ev)
        key = base_key(inputs)
        location = base_eval_location(ev.cfg.save_root, key)
        kept = find_base_results(location, key)
        if kept is None:
            return cls(key, inputs, location, None)
        say(f"base model {model}: reusing its results on the same data, tasks and settings from {location} "
            f"(computed by {kept.evaluated_by}); evaluating the trained model alone")
        return cls(key, inputs, location, EvalWorkerOutcome(metrics={"base": kept.metrics},
                                                            seconds={"base": kept.seconds}))

    @property
    def roles(self) -> tuple[str, ...]:
        """The models the evaluation process evaluates."""
        return tuple(r for r in ROLES if not (r == "base" and self.found))

    def merged(self, ev: Evaluation, outcome: EvalWorkerOutcome) -> EvalWorkerOutcome:
        """Both models' metrics: the kept base's with the process's, or the process's (kept for next time)."""
        if self.found is None:
            keep_base_results(self.location, self.key, self.inputs, ev, outcome.metrics["base"],
                              outcome.seconds["base"])
            return outcome
        return EvalWorkerOutcome(metrics={**self.found.metrics, **outcome.metrics}, seconds=outcome.seconds)

    def log_kept(self, tracker: Tracker, run: MlflowRun) -> None:
        """The base model's MLflow run, when its results were reused: the kept metrics, where they were read, and
        finished (no evaluation process logs into it)."""
        if self.found is not None:
            tracker.log_results(run, {k: v.value for k, v in self.found.metrics["base"].items()},
                                {"base_reused": self.location}, [])
            tracker.finish(run, "FINISHED")


def base_inputs(ev: Evaluation) -> dict:
    """Everything that determines the base model's numbers in this evaluation (see the module docstring)."""
    report, staged = ev.report, ev.staged
    return {
        "format": BaseEvalResults.FORMAT,
        "model": base_identity(staged.base_dir, staged.base_source.revision),
        "tokenizer": report.tokenizer.model_dump(mode="json"),
        "framing": staged.framing.model_dump(mode="json"),
        "data": [{"name": s.name, "val_split": join(s.out_root, VAL), "fingerprint": s.fingerprint,
                  "val_tokens": s.val_tokens} for s in report.subsets if s.val_tokens > 0],
        "tasks": tasks_identity(ev.tasks),
        "config": portable_config(build_eval_yaml(ev, "base", {})),
        "device": "gpu" if ev.gpus else "cpu",
        "code": code_version(),
    }


def base_key(inputs: dict) -> str:
    """sha256 of the inputs (canonical JSON)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def base_eval_location(save_root: str, key: str) -> str:
    """``<save root>/base-evals/<key[:16]>/base-eval.json``."""
    return join(save_root, BASE_EVALS_DIR, key[:16], BASE_EVAL_JSON)


def find_base_results(location: str, key: str) -> BaseEvalResults | None:
    """The kept results at ``location`` when they are valid and of exactly this key, else None."""
    return find_complete(location, BaseEvalResults, lambda found: found.key == key)


def keep_base_results(location: str, key: str, inputs: dict, ev: Evaluation, metrics: dict[str, MetricValue],
                      seconds: float) -> None:
    """Write the base model's results for the next evaluation with this key (atomically: a reader sees the
    whole document or none)."""
    write_document(location, BaseEvalResults(
        key=key, inputs=inputs, base_model=ev.staged.base_source, metrics=metrics, seconds=seconds,
        evaluated_by=join(ev.folder, EVAL_JSON), created_at=datetime.now(timezone.utc).isoformat()))


def base_identity(folder: Path, revision: str | None) -> dict:
    """A hub model's commit pins its files; any other model is named by the sha256 of each top-level config
    and weights file of its staged folder (a folder rewritten in place with new weights gets a new key; the hashes
    are remembered by the files' stat, so an unchanged model is not read again)."""
    if revision:
        return {"revision": revision}
    return {"files": {p.name: sha256_file_cached(p) for p in sorted(folder.iterdir())
                      if p.is_file() and p.suffix in MODEL_FILES}}


def tasks_identity(tasks: TaskList) -> list[dict]:
    """Each task's keys, its examples named by their sha256 (the generated ones live in this evaluation's
    scratch: their path is no part of the key); a file without a hash (a hub dataset) by its URI."""
    named = []
    for task in tasks.tasks:
        digest = tasks.hashes.get(task["label"])
        named.append({**{k: v for k, v in task.items() if k != "dataset_uri" or digest is None},
                      "sha256": digest})
    return named


def portable_config(config: dict) -> dict:
    """The eval config without what names this evaluation (run and model names, its scratch's paths, the
    MLflow logger): what is left is how the model is evaluated."""
    (model,) = config["models"]
    kept = {k: v for k, v in config.items() if k not in ("run_name", "models", "icl_tasks", "loggers", "code_paths")}
    kept["model"] = {k: v for k, v in model["model"].items() if k != "pretrained_model_name_or_path"}
    kept["tokenizer_kwargs"] = model["tokenizer"].get("kwargs", {})
    kept["eval_loaders"] = [{**loader, "dataset": {k: v for k, v in loader["dataset"].items() if k != "local"}}
                            for loader in config["eval_loaders"]]
    return kept
