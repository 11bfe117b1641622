"""``cpt-tasks recommend``: the replay sweep's last step. Reads each proxy run's evaluation (one per swept replay
fraction, found by the sweep's plan and run id), turns them into measured points, fits forgetting against the
fraction and recommends one (:mod:`cpt_tasks.sweep.recommendation`); writes ``sweep.png``, ``sweep-report.md``
and ``sweep-report.json`` (last: the completion marker) beside the plan, leaves the corpus's sweep pointer (what
``replay_fraction: "recommended"`` reads), and tracks the sweep as an MLflow parent run with the proxy runs'
training and evaluation runs nested under it.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from cpt_tasks.configs.recommend_config import RecommendConfig
from cpt_tasks.documents import dump_document, read_document, write_document
from cpt_tasks.documents.evaluate_docs import EvalReport
from cpt_tasks.documents.plan_docs import Plan, load_plan
from cpt_tasks.documents.sweep_docs import SweepPointer, SweepReport, SweepResult
from cpt_tasks.errors import UserError
from cpt_tasks.jobs import Outcome
from cpt_tasks.layout import EVAL_DIR, EVAL_JSON, SWEEP_PNG, SWEEP_REPORT_JSON, SWEEP_REPORT_MD, sweep_pointer, \
    sweep_run_id
from cpt_tasks.runs.status import read_run_manifest, run_paths
from cpt_tasks.storage import join, list_files, read_bytes, write_bytes_atomic
from cpt_tasks.sweep.recommendation import point_from_eval, sweep_report
from cpt_tasks.sweep.sweep_render import render_markdown, render_png
from cpt_tasks.tracking.mlflow_store import Tracker, airflow_tags, connect


def newest_evaluation(folder: str, where: str) -> tuple[str, EvalReport]:
    """The newest evaluation report of the training run in ``folder``; UserError when there is none."""
    reports = [join(folder, EVAL_DIR, name) for name in list_files(join(folder, EVAL_DIR))
               if name.endswith("/" + EVAL_JSON)]
    found = [(location, read_document(location, EvalReport)[0]) for location in reports]
    if not found:
        raise UserError(f"{where}: no evaluation under {join(folder, EVAL_DIR)}; the sweep's evaluate step has not "
                        "finished for it")
    return max(found, key=lambda pair: pair[1].created_at)


def sweep_of(plan: Plan, where: str) -> tuple[list[float], str]:
    """The swept fractions and the domain component of a sweep's plan; UserError for any other plan."""
    if plan.sweep is None:
        raise UserError(f"--plan {where}: not a replay sweep's plan (no sweep_fractions); plan with "
                        "--sweep_fractions (the DAG cpt_replay_sweep)")
    domain = [s.name for s in plan.subsets if s.role == "domain"]
    if len(domain) != 1:
        raise UserError(f"--plan {where}: a replay sweep needs exactly one domain component")
    return plan.sweep.fractions, domain[0]


def recommend_sweep(cfg: RecommendConfig) -> SweepResult:
    """Points, fit and recommendation of the sweep; the report files, the pointer and the MLflow parent run."""
    plan, _ = load_plan(cfg.plan)
    fractions, domain = sweep_of(plan, cfg.plan)
    points, folders, children = [], [], []
    for fraction in fractions:
        run_id = sweep_run_id(cfg.run_id, fraction)
        paths = run_paths(cfg.save_root, plan.fingerprint, run_id)
        where = f"replay fraction {fraction:g} (run {run_id})"
        manifest = read_run_manifest(paths.manifest, plan.fingerprint)
        if manifest is None:
            raise UserError(f"{where}: no finished training run at {paths.folder}; the sweep's train step has not "
                            "finished for it")
        location, evaluation = newest_evaluation(paths.folder, where)
        points.append(point_from_eval(fraction, evaluation, domain, location))
        folders.append(paths.folder)
        children += [run.run_id for run in (manifest.mlflow, evaluation.mlflow) if run and run.run_id]
    report = sweep_report(points, domain, cfg.forgetting_tolerance, proxy_model=manifest.model.source,
                          proxy_tokens=plan.total_tokens, corpus_fingerprint=plan.corpus_key, mix=plan.mix.name,
                          tokenizer=plan.tokenizer.name)
    folder = cfg.report_dir or cfg.plan.rpartition("/")[0] or "."
    files = {"json": join(folder, SWEEP_REPORT_JSON), "md": join(folder, SWEEP_REPORT_MD),
             "png": join(folder, SWEEP_PNG)}
    contents = {"png": render_png(report), "md": render_markdown(report).encode(), "json": dump_document(report)}
    for kind in ("png", "md", "json"):  # the report last: the completion marker
        write_bytes_atomic(files[kind], contents[kind])
    pointer = _leave_pointer(cfg, plan, report, files["json"]) if cfg.sweeps_root and plan.corpus_key else None
    recommendation = report.recommendation
    return SweepResult(status=recommendation.status, fraction=recommendation.fraction, reason=recommendation.reason,
                       report=files["json"], report_md=files["md"], report_png=files["png"], pointer=pointer,
                       plan_fingerprint=plan.fingerprint, corpus_key=plan.corpus_key, run_folders=folders,
                       mlflow=_track(cfg, report, files, contents, children))


def _leave_pointer(cfg: RecommendConfig, plan: Plan, report: SweepReport, location: str) -> str:
    """The corpus's sweep pointer, replaced by this newer sweep."""
    target = sweep_pointer(cfg.sweeps_root, plan.corpus_key)
    recommendation = report.recommendation
    write_document(target, SweepPointer(
        corpus_key=plan.corpus_key, status=recommendation.status, fraction=recommendation.fraction,
        reason=recommendation.reason, report=location, sweep_run=cfg.run_id, mix=plan.mix.name,
        tokenizer=plan.tokenizer.name, created_at=datetime.now(timezone.utc).isoformat()))
    return target


def _track(cfg: RecommendConfig, report: SweepReport, files: dict[str, str], contents: dict[str, bytes],
           children: list[str]):
    """The sweep's parent MLflow run: every point's numbers, the recommendation, the report's files; the proxy
    runs' own runs nested under it."""
    tracker, tracked = connect("recommend")
    if tracker is None:
        return tracked
    run = tracker.open_run(f"sweep-{cfg.run_id}", airflow_tags())
    metrics = {f"sweep/{name}/{p.fraction:g}": value for p in report.points
               for name, value in (("gain", p.domain_gain), ("forgetting", p.forgetting), ("icl_worse", p.icl_worse))}
    if report.recommendation.fraction is not None:
        metrics["sweep/recommended_fraction"] = report.recommendation.fraction
    params = {"status": report.recommendation.status, "tolerance": report.tolerance, "domain": report.domain,
              "fractions": ",".join(f"{p.fraction:g}" for p in report.points), "fit": report.fit.form}
    with tempfile.TemporaryDirectory(prefix="cpt-sweep-") as tmp:
        local = []
        for kind in ("json", "md", "png"):  # the bytes just written, not read back
            path = Path(tmp) / files[kind].rsplit("/", 1)[-1]
            path.write_bytes(contents[kind])
            local.append(str(path))
        tracker.log_results(run, metrics, params, local)
    tracker.nest(run, children)
    tracker.finish(run, "FINISHED")
    return run


def command(cfg: RecommendConfig) -> Outcome:
    """``cpt-tasks recommend``: the sweep report as Markdown, its files, and the result for the DAG. A sweep that
    recommends nothing still succeeds: the report says why, and replay_fraction 'recommended' refuses it. A rerun
    writes the same report again (the points come from the finished runs' own evaluations)."""
    result = recommend_sweep(cfg)
    print((read_bytes(result.report_md) or b"").decode())
    print(f"report: {result.report}, {result.report_md}, {result.report_png}"
          + (f"; pointer: {result.pointer}" if result.pointer else ""), file=sys.stderr)
    print(dump_document(result).decode())
    return Outcome(result)
