"""``evaluate(cfg) -> EvaluateResult``: is the trained model better than the one it started from, and where.

The parent process finds the finished training run (none: exit 2), checks a user's task list (exit 2 naming the
file and the task) and computes the evaluation's fingerprint: a finished evaluation with that fingerprint is
returned at once. Otherwise it stages both models, writes the ICL tasks (by default generated from the val
splits) and one LLM-Foundry eval config per model, and starts the evaluation process
(``cpt_tasks.evaluate.eval_worker``: LLM-Foundry's ``evaluate()``, base then trained, one process on one GPU or the
CPU). The base model's results are kept under the save root and reused by a later evaluation of the same base
on the same data, tasks and settings, which then evaluates the trained model alone
(``cpt_tasks.evaluate.base_results``). It writes the report beside the run's checkpoints, ``eval-report.json``
last (the completion marker), and when tracked an MLflow run with base/trained/delta metrics and the report's
files, each model's own run under it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from cpt_tasks.configs.evaluate_config import DEFAULT_TASKS, EvaluateConfig
from cpt_tasks.documents import read_document, write_document
from cpt_tasks.documents.evaluate_docs import ROLES, EvalReport, EvalSubset, EvalTasks, EvalWorkerOutcome, \
    EvaluateResult
from cpt_tasks.documents.train_docs import MlflowRun, ReportRef, RunManifest
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.errors import UserError
from cpt_tasks.jobs import Outcome
from cpt_tasks.evaluate.base_results import KeptBase
from cpt_tasks.evaluate.evaluation import Evaluation, Staged
from cpt_tasks.evaluate.eval_yaml import SEED, build_eval_yaml
from cpt_tasks.evaluate.eval_inputs import FinishedTraining, base_model, eval_fingerprint, find_run, model_identity, \
    plan_tasks, settings
from cpt_tasks.evaluate.eval_report import EXPLAINED, compare, cpt_summary, format_summary, headline, render_markdown, \
    render_png
from cpt_tasks.evaluate.tasks import DEFAULT_MEASURES, USER_MEASURES, TaskList, generate_default_tasks, to_yaml
from cpt_tasks.evaluate.eval_worker import config_file
from cpt_tasks.layout import EVAL_JSON, EVAL_MD, EVAL_PNG, EVAL_TASKS_FILE, VAL, eval_folder
from cpt_tasks.runs.completion import ALREADY_COMPLETE, find_complete
from cpt_tasks.runs.workers import RESULT_FILE, count_gpus, launch
from cpt_tasks.runs.log import teller
from cpt_tasks.runs.scratch import scratch_root
from cpt_tasks.runs.staging import check_data, check_model, hf_export_problem, load_report, resolve_tokenizer, \
    stage_model
from cpt_tasks.tracking.tracked_run import failing_run
from cpt_tasks.runs.versions import code_version
from cpt_tasks.storage import join, write_bytes_atomic
from cpt_tasks.tracking.mlflow_store import Tracker, airflow_tags, connect

JOB = "evaluate"
WORKER = "cpt_tasks.evaluate.eval_worker"
say = teller(JOB)


def evaluate(cfg: EvaluateConfig) -> EvaluateResult:
    """Evaluate the base model and the trained one alike (or return the finished evaluation of the same inputs)."""
    started = time.time()
    report, _ = load_report(cfg.report)
    run = find_run(cfg, report)
    manifest = run.manifest
    user_tasks = plan_tasks(cfg)
    model, revision = base_model(cfg, manifest)
    fingerprint = eval_fingerprint(run, report, model_identity(model, revision), cfg, user_tasks)
    folder = eval_folder(manifest.run_folder, fingerprint)
    done = find_complete(join(folder, EVAL_JSON), EvalReport, lambda found: found.eval_fingerprint == fingerprint)
    if done is not None:
        say(f"evaluation {fingerprint[:16]} of run {manifest.run_name} already finished: {join(folder, EVAL_JSON)}")
        return _result(ALREADY_COMPLETE, done, folder)
    gpus = count_gpus()
    precision = _precision(cfg, gpus)  # a precision this machine cannot run fails before any model is staged
    say(f"evaluating run {manifest.run_name} (step {manifest.final_step}) against {model}: {folder}")
    local_root = scratch_root(cfg.local_dir, JOB)
    scratch = local_root / f"{manifest.run_name}-{fingerprint[:16]}"
    scratch.mkdir(parents=True, exist_ok=True)
    staged = _stage(report, run, model, revision, local_root / "models")
    ev = Evaluation(cfg=cfg, report=report, run=run, fingerprint=fingerprint, folder=folder, scratch=scratch,
                    staged=staged, tasks=_tasks(cfg, user_tasks, report, staged, scratch), gpus=gpus,
                    precision=precision)
    base = KeptBase.look_up(ev, model, say)
    seconds = {"prepare": round(time.time() - started, 1)}
    outcome, tracking = _run_models(ev, base)
    seconds.update(outcome.seconds)
    seconds["total"] = round(time.time() - started, 1)
    body = _report(ev, outcome, tracking.runs["evaluate"], seconds, base.location if base.found else None)
    _publish(ev, body, tracking.tracker)
    say(f"report {join(folder, EVAL_JSON)} ({seconds['total']:.0f}s)")
    return _result("evaluated", body, folder)


@dataclass
class Tracking:
    """The evaluation's MLflow runs ("evaluate", and "base"/"trained" under it) and the store's tracker."""

    tracker: Tracker | None
    runs: dict[str, MlflowRun]
    loggers: dict[str, dict] = field(default_factory=dict)


def _stage(report: VerifyReport, run: FinishedTraining, model: str, revision: str | None, cache: Path) -> Staged:
    manifest = run.manifest
    _, framing = check_data(report)
    tokenizer_dir, vocab_size = resolve_tokenizer(report, framing)
    problem = hf_export_problem(manifest.hf_export)
    if problem:
        raise UserError(f"run {manifest.run_name}: its trained model: {problem}; remove {run.location} and run "
                        "the train step again: it exports from the run's last checkpoint")
    trained_dir, _ = stage_model(manifest.hf_export, None, cache)
    check_model(trained_dir, vocab_size, report.concat_tokens, manifest.hf_export)
    try:
        base_dir, source = stage_model(model, revision, cache)
        check_model(base_dir, vocab_size, report.concat_tokens, model)
    except UserError as exc:
        raise UserError(f"base model (--base_model; default: the run's --model): {exc}") from None
    return Staged(tokenizer_dir, framing, base_dir, source, trained_dir)


def _tasks(cfg: EvaluateConfig, user_tasks: TaskList | None, report: VerifyReport, staged: Staged,
           scratch: Path) -> TaskList:
    if user_tasks is not None:
        return user_tasks
    if cfg.icl_tasks != DEFAULT_TASKS:
        return TaskList(source=cfg.icl_tasks)
    subsets = [s for s in report.subsets if s.val_tokens > 0]
    tasks = generate_default_tasks(subsets, report.concat_tokens, staged.tokenizer_dir, staged.framing.bos_text,
                                   staged.framing.eos_text, cfg.max_icl_examples, scratch / "icl")
    say("default ICL tasks (held-out next word): " + ", ".join(f"{k} {v}" for k, v in tasks.examples.items()))
    return tasks


def _precision(cfg: EvaluateConfig, gpus: int) -> str:
    precision = ("amp_bf16" if gpus else "fp32") if cfg.precision == "auto" else cfg.precision
    if precision == "amp_bf16" and not gpus:
        raise UserError("--precision amp_bf16 needs a GPU (this machine has none); use auto or fp32")
    return precision


def _run_models(ev: Evaluation, base: KeptBase) -> tuple[EvalWorkerOutcome, Tracking]:
    """Write each model's config and run the evaluation process on the models without kept results; both
    models' metrics and the MLflow runs."""
    if ev.tasks_yaml is not None:
        ev.tasks_yaml.write_text(to_yaml(ev.tasks.tasks))
    tracking = _track(ev.run.manifest, ev.name, ev.fingerprint, ev.gpus)
    for role in ROLES:
        config = build_eval_yaml(ev, role, tracking.loggers.get(role, {}))
        header = "# Written by `cpt-tasks evaluate`; LLM-Foundry's eval format (scripts/eval/eval.py).\n"
        (ev.scratch / config_file(role)).write_text(header + yaml.safe_dump(config, sort_keys=False))
    with failing_run(tracking.tracker, tracking.runs["evaluate"]):
        # the process cleans streaming's stale shared memory itself
        outcome = launch([sys.executable, "-m", WORKER, str(ev.scratch), *base.roles], ev.scratch, JOB,
                         what="the evaluation process", retry="a retry evaluates again",
                         result_file=ev.scratch / RESULT_FILE, result=EvalWorkerOutcome)
        outcome = base.merged(ev, outcome)
    if "base" in tracking.runs:
        base.log_kept(tracking.tracker, tracking.runs["base"])
    return outcome, tracking


def _track(manifest: RunManifest, name: str, fingerprint: str, gpus: int) -> Tracking:
    """The evaluation's MLflow run and one run per model under it (their loggers' YAML entries)."""
    tracker, record = connect("evaluation")
    if tracker is None:
        return Tracking(None, {"evaluate": record})
    tags = {"cpt.step": "evaluate", "cpt.plan_fingerprint": manifest.plan.fingerprint,
            "cpt.run_name": manifest.run_name, "cpt.eval_fingerprint": fingerprint,
            "cpt.hf_export": manifest.hf_export, "cpt.base_model": manifest.model.source, **airflow_tags()}
    if manifest.mlflow and manifest.mlflow.run_id:
        tags["cpt.train_mlflow_run_id"] = manifest.mlflow.run_id
    tracking = Tracking(tracker, {"evaluate": tracker.open_run(name, tags)})
    parent = tracking.runs["evaluate"]
    for role in ROLES if parent.status == "tracked" else ():
        child_tags = {**tags, "cpt.model_role": role, "mlflow.parentRunId": parent.run_id}
        child = tracker.open_run(f"{name}-{role}", child_tags)
        if child.status == "tracked":
            tracking.runs[role] = child
            tracking.loggers[role] = tracker.logger(child, f"{name}-{role}", child_tags, system_metrics=gpus > 0)
    return tracking


def _report(ev: Evaluation, outcome: EvalWorkerOutcome, tracked: MlflowRun, seconds: dict,
            base_reused: str | None) -> EvalReport:
    manifest, report, tasks, folder = ev.run.manifest, ev.report, ev.tasks, ev.folder
    rows = compare(outcome)
    published = _published_tasks(tasks, folder)
    return EvalReport(
        eval_fingerprint=ev.fingerprint, plan_fingerprint=manifest.plan.fingerprint, run_name=manifest.run_name,
        run_folder=manifest.run_folder, run_manifest=ReportRef(location=ev.run.location, sha256=ev.run.sha256),
        checkpoint=manifest.checkpoint, hf_export=manifest.hf_export, base_model=ev.staged.base_source,
        tokenizer=report.tokenizer, concat_tokens=report.concat_tokens,
        subsets=[EvalSubset(name=s.name, val_split=join(s.out_root, VAL), fingerprint=s.fingerprint,
                            val_tokens=s.val_tokens, role=s.role) for s in report.subsets if s.val_tokens > 0],
        tasks=EvalTasks(source=tasks.source, sha256=tasks.sha256,
                        task_list=join(folder, EVAL_TASKS_FILE) if tasks.tasks else None,
                        tasks=published.described(),
                        measures=DEFAULT_MEASURES if tasks.source == DEFAULT_TASKS else USER_MEASURES),
        settings={**settings(ev.cfg, report), "seed": SEED}, rows=rows,
        cpt=cpt_summary(rows, {s.name: s.role for s in report.subsets}),
        metrics_explained={m: EXPLAINED[m] for m in dict.fromkeys(r.metric for r in rows) if m in EXPLAINED},
        files={"markdown": join(folder, EVAL_MD), "png": join(folder, EVAL_PNG),
               **{f"config_{role}": join(folder, config_file(role)) for role in ROLES}},
        mlflow=tracked, code_version=code_version(), seconds=seconds,
        created_at=datetime.now(timezone.utc).isoformat(), base_reused=base_reused)


def _published_tasks(tasks: TaskList, folder: str) -> TaskList:
    """The tasks as the evaluation's folder keeps them: generated examples files beside the report."""
    if tasks.source != DEFAULT_TASKS:
        return tasks
    moved = [{**t, "dataset_uri": join(folder, "icl", f"{t['label']}.jsonl")} for t in tasks.tasks]
    return TaskList(source=tasks.source, tasks=moved, hashes=tasks.hashes, examples=tasks.examples)


def _publish(ev: Evaluation, body: EvalReport, tracker: Tracker | None) -> None:
    """The task list (and generated examples), the configs, the Markdown and the PNG, the MLflow run's results,
    then the report itself, last."""
    tasks, scratch, folder = ev.tasks, ev.scratch, ev.folder
    if tasks.tasks:
        for task in (tasks.tasks if tasks.source == DEFAULT_TASKS else []):
            write_bytes_atomic(join(folder, "icl", f"{task['label']}.jsonl"), Path(task["dataset_uri"]).read_bytes())
        write_bytes_atomic(join(folder, EVAL_TASKS_FILE), to_yaml(_published_tasks(tasks, folder).tasks).encode())
    for role in ROLES:
        write_bytes_atomic(join(folder, config_file(role)), (scratch / config_file(role)).read_bytes())
    out = scratch / "report"
    out.mkdir(exist_ok=True)
    (out / EVAL_MD).write_text(render_markdown(body))
    (out / EVAL_PNG).write_bytes(render_png(body))
    write_document(str(out / EVAL_JSON), body)
    if tracker is not None and body.mlflow.status == "tracked":
        metrics = {}
        for row in body.rows:
            what = f"{row.name}/{row.metric}"
            metrics.update({f"base/{what}": row.base.value, f"trained/{what}": row.trained.value,
                            f"delta/{what}": row.delta})
        for side, changes in (("gain", body.cpt.gain), ("forgetting", body.cpt.forgetting)):
            metrics.update({f"cpt/{side}/{c.name}/{c.metric}": c.delta for c in changes})
        params = {"icl_tasks": body.tasks.source, **{k: str(v) for k, v in body.settings.items()}}
        tracker.log_results(body.mlflow, metrics, params, [str(out / n) for n in (EVAL_MD, EVAL_PNG, EVAL_JSON)])
        tracker.finish(body.mlflow, "FINISHED")
    for name in (EVAL_MD, EVAL_PNG):
        write_bytes_atomic(join(folder, name), (out / name).read_bytes())
    write_document(join(folder, EVAL_JSON), body)


def _result(status: str, body: EvalReport, folder: str) -> EvaluateResult:
    """The step's result; its task files are the user's list and examples, or the generated ones."""
    generated = body.tasks.source == DEFAULT_TASKS
    listed = body.tasks.task_list if generated else body.tasks.source
    files = ([listed] if listed and body.tasks.tasks else []) + [t.dataset_uri for t in body.tasks.tasks]
    return EvaluateResult(status=status, report=join(folder, EVAL_JSON), report_md=join(folder, EVAL_MD),
                          report_png=join(folder, EVAL_PNG), eval_fingerprint=body.eval_fingerprint,
                          plan_fingerprint=body.plan_fingerprint, run_folder=body.run_folder,
                          hf_export=body.hf_export, val_splits=[s.val_split for s in body.subsets],
                          task_files=files, headline=headline(body.rows), mlflow=body.mlflow)


def command(cfg: EvaluateConfig) -> Outcome:
    """``cpt-tasks evaluate``: the summary and the report's paths on stderr, the result as the last stdout line."""
    result = evaluate(cfg)
    report = read_document(result.report, EvalReport)[0]
    print(format_summary(report), file=sys.stderr)
    print(f"report: {result.report}, {result.report_md}, {result.report_png}", file=sys.stderr)
    print(result.model_dump_json())
    return Outcome(result)
