"""What an evaluation compares, found and checked before anything heavy runs: the finished training run (its
manifest), the base model, the ICL tasks, and the evaluation's fingerprint (same fingerprint: same numbers, so
a finished evaluation is returned as it is)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from cpt_tasks.configs.evaluate_config import DEFAULT_TASKS, NO_TASKS, EvaluateConfig
from cpt_tasks.documents import parse_document
from cpt_tasks.documents.evaluate_docs import EvalReport
from cpt_tasks.documents.train_docs import RunManifest
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.errors import UserError
from cpt_tasks.evaluate.tasks import GENERATOR, TaskList, read_task_list
from cpt_tasks.runs.status import find_finished_run, run_paths
from cpt_tasks.storage import is_remote, read_bytes


@dataclass(frozen=True)
class FinishedTraining:
    """The training run evaluated: its manifest, where it was read, and the sha256 of its bytes."""

    manifest: RunManifest
    location: str
    sha256: str


def find_run(cfg: EvaluateConfig, report: VerifyReport) -> FinishedTraining:
    """``--run_manifest``, else this plan's run of ``--run_id`` if it finished, else the plan's newest finished
    run; UserError when there is none (nothing to evaluate: no retry can help)."""
    plan = report.plan.fingerprint
    if cfg.run_manifest:
        found = _read_run(cfg.run_manifest, "--run_manifest")
        if found is None:
            raise UserError(f"--run_manifest {cfg.run_manifest}: no such file")
        if found.manifest.plan.fingerprint != plan:
            raise UserError(f"--run_manifest {cfg.run_manifest}: a run of plan {found.manifest.plan.fingerprint[:12]}"
                            f", but --report {cfg.report} is plan {plan[:12]}")
        return found
    candidates = [run_paths(cfg.save_root, plan, cfg.run_id).manifest] if cfg.run_id else []
    pointer = find_finished_run(cfg.save_root, plan)
    if pointer is not None:
        candidates.append(pointer.run_manifest)
    for location in candidates:
        found = _read_run(location, location)
        if found is not None and found.manifest.plan.fingerprint == plan:
            return found
    raise UserError(f"no finished training run of plan {plan[:12]} under {cfg.save_root}"
                    + (f" (run id {cfg.run_id})" if cfg.run_id else "")
                    + "; train first, or pass --run_manifest")


def _read_run(location: str, where: str) -> FinishedTraining | None:
    data = read_bytes(location)
    if data is None:
        return None
    return FinishedTraining(parse_document(data, RunManifest, where), location, hashlib.sha256(data).hexdigest())


def base_model(cfg: EvaluateConfig, run: RunManifest) -> tuple[str, str | None]:
    """(model, revision) to compare with: --base_model, else the model the run started from (pinned)."""
    if cfg.base_model:
        return cfg.base_model, cfg.base_model_revision
    return run.model.source, run.model.revision


def model_identity(model: str, revision: str | None) -> dict:
    """What identifies a model's weights without reading them all: hub id and commit, an object-storage folder,
    or a local folder's config.json hash and weight file sizes."""
    identity: dict = {"model": model, "revision": revision}
    path = Path(model).expanduser()
    if not is_remote(model) and (path / "config.json").is_file():
        identity["config_sha256"] = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()
        identity["weights"] = {p.name: p.stat().st_size for p in sorted(path.iterdir())
                               if p.suffix in (".safetensors", ".bin")}
    return identity


def plan_tasks(cfg: EvaluateConfig) -> TaskList | None:
    """A user's task list read and checked now (exit 2 before anything runs); None for default and none."""
    if cfg.icl_tasks in (DEFAULT_TASKS, NO_TASKS):
        return None
    return read_task_list(cfg.icl_tasks, cfg.icl_data_root)


def settings(cfg: EvaluateConfig, report: VerifyReport) -> dict:
    """The settings that determine the numbers (what a finished evaluation must agree with)."""
    return {"device_eval_batch_size": cfg.device_eval_batch_size, "eval_subset_num_batches":
            cfg.eval_subset_num_batches, "icl_subset_num_batches": cfg.icl_subset_num_batches,
            "precision": cfg.precision, "max_seq_len": report.concat_tokens, "processes": 1,
            "max_icl_examples": cfg.max_icl_examples if cfg.icl_tasks == DEFAULT_TASKS else None}


def eval_fingerprint(run: FinishedTraining, report: VerifyReport, base: dict, cfg: EvaluateConfig,
                     user_tasks: TaskList | None) -> str:
    """sha256 of everything that determines the report's numbers: the run (its manifest's bytes), the val data,
    the base model, the tasks (generator, or the list's and its files' hashes), settings and harness version."""
    if user_tasks is not None:
        tasks = {"sha256": user_tasks.sha256, "files": user_tasks.hashes}
    else:
        tasks = {"source": cfg.icl_tasks, "generator": GENERATOR if cfg.icl_tasks == DEFAULT_TASKS else None}
    body = {"format": EvalReport.FORMAT, "run_manifest_sha256": run.sha256, "base": base, "tasks": tasks,
            "data": sorted((s.name, s.fingerprint) for s in report.subsets), "settings": settings(cfg, report),
            "llm-foundry": version("llm-foundry")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

