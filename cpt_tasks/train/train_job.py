"""``train(cfg) -> TrainResult``: continual pretraining with LLM-Foundry on a verified mix, safe to retry.

The parent checks the inputs once, finds how far the run got, writes ``train.yaml`` and cleans streaming's
stale shared memory; the training processes (``cpt_tasks.train.train_worker``; through ``composer -n N`` when
N > 1) train with autoresume and write the Hugging Face export; the parent then writes the metrics, the loss
curve, the run manifest and the plan's finished-run pointer. A retry resumes from the latest checkpoint; a run
whose training finished but whose export or manifest did not only exports; a finished run returns at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.documents.train_docs import MlflowRun, ReportRef, RunManifest, TrainResult, WorkerOutcome
from cpt_tasks.errors import UserError
from cpt_tasks.jobs import Outcome
from cpt_tasks.runs.completion import ALREADY_COMPLETE
from cpt_tasks.runs.workers import RESULT_FILE, clean_stale_shared_memory, count_gpus, launch
from cpt_tasks.runs.log import teller
from cpt_tasks.runs.scratch import scratch_root
from cpt_tasks.runs.staging import hf_export_problem, load_report
from cpt_tasks.runs.status import RunPaths, checkpoints_after, latest_checkpoint, read_run_manifest, \
    remove_checkpoint, run_paths
from cpt_tasks.tracking.tracked_run import failing_run
from cpt_tasks.runs.versions import code_version
from cpt_tasks.storage import read_bytes, remove_tree, write_bytes_atomic
from cpt_tasks.tracking.mlflow_store import Tracker, airflow_tags, connect
from cpt_tasks.train.agreement import NodeAgreement, node_agreement
from cpt_tasks.train.train_yaml import TrainLength, YamlInputs, build_yaml, settings, settings_fingerprint, \
    sharding_strategy, train_length, uses_fsdp
from cpt_tasks.train.train_inputs import TrainInputs, resolve_inputs
from cpt_tasks.train.launch_command import Rendezvous, worker_argv
from cpt_tasks.train.run_record import summarize, write_run_record
from cpt_tasks.train.sweep_draw import sweep_params, sweep_tags

JOB = "train"
say = teller(JOB)


def train(cfg: TrainConfig) -> TrainResult:
    """Train (or resume, or recognise as finished) the run of ``cfg.report``'s plan and ``cfg.run_id``."""
    with node_agreement(cfg) as nodes:
        return _train(cfg, nodes)


def _train(cfg: TrainConfig, nodes: NodeAgreement | None) -> TrainResult:
    started = time.time()
    report, report_sha = load_report(cfg.report)
    paths = run_paths(cfg.save_root, report.plan.fingerprint, cfg.run_id)
    length = train_length(cfg, report)
    wanted = settings(cfg, length)
    finished = read_run_manifest(paths.manifest, report.plan.fingerprint)
    if finished is not None:
        _check_settings(finished.settings, wanted, paths, "finished")
        if nodes is not None:
            nodes.agree(_view(paths, report_sha, ALREADY_COMPLETE, finished.final_step))
        say(f"run {paths.run_name} already finished at step {finished.final_step}: {paths.manifest}")
        return _result(ALREADY_COMPLETE, paths, finished)

    local_root = scratch_root(cfg.local_dir, JOB)
    if cfg.nnodes > 1:  # nodes may share the scratch volume (a cache PVC): each needs its own data cache and files
        local_root = local_root / f"node-{cfg.node_rank}"
    scratch = local_root / paths.run_name
    scratch.mkdir(parents=True, exist_ok=True)
    inputs = resolve_inputs(cfg, report, report_sha, local_root)
    gpus = count_gpus()
    _check_device(cfg, gpus)
    mode, step, stale = _resume_point(paths, length, wanted)
    first = cfg.node_rank == 0
    tracker, tracked, logger = _track(cfg, inputs, paths, gpus) if first else (None, MlflowRun(status="off"), {})
    with failing_run(tracker, tracked):  # a retry opens the same run again
        if nodes is not None:  # every node's processes need node 0's loggers (Composer's MLflow logger broadcasts)
            logger = nodes.agree(_view(paths, report_sha, mode, step, device="cuda" if gpus else "cpu"), logger)
        yaml_cfg = build_yaml(cfg, report, YamlInputs(run=paths, length=length, model_dir=str(inputs.model_dir),
                                                      tokenizer_dir=str(inputs.tokenizer_dir), scratch=scratch,
                                                      gpus=gpus, mlflow_logger=logger))
        if first:
            _remove_stale(stale)
        outcome = _launch(cfg, yaml_cfg, paths, mode, scratch, gpus)
        if not first:
            say(f"node {cfg.node_rank}: training processes done; node 0 writes the run's record")
            return _node_result(paths, report.plan.fingerprint, length, step)
        _check_finished(outcome, length, paths)
    manifest = _run_manifest(Attempt(cfg, inputs, paths, length, wanted, gpus, mode, started), outcome, tracked)
    write_run_record(paths, manifest, outcome.history)
    state = "trained" if mode == "train" and manifest.start_step == 0 else "resumed"
    say(f"run {paths.run_name} {state}: step {manifest.final_step}, {manifest.train_tokens:,} tokens; "
        f"manifest {paths.manifest}")
    return _result(state, paths, manifest)


def _view(paths: RunPaths, report_sha: str, decision: str, step: int, **more: str) -> dict:
    """What this node publishes for the nodes' agreement (its options are added by the agreement)."""
    return {"run_folder": paths.folder, "report_sha256": report_sha, "decision": decision, "resume_step": step,
            "code_version": json.dumps(code_version(), sort_keys=True), **more}


def _track(cfg: TrainConfig, inputs: TrainInputs, paths: RunPaths, gpus: int
           ) -> tuple[Tracker | None, MlflowRun, dict]:
    """The run's MLflow run (opened again by a retry: the same run name) and the YAML's logger for it."""
    tracker, tracked = connect("training")
    if tracker is None:
        return None, tracked, {}
    tags = {"cpt.step": "train", "cpt.plan_fingerprint": inputs.report.plan.fingerprint, "cpt.run_name": paths.run_name,
            "cpt.run_id": cfg.run_id, "cpt.verify_report": cfg.report, "cpt.model": inputs.model.source,
            **{f"cpt.data.{d.subset}.manifest": d.manifest for d in inputs.data}, **sweep_tags(cfg),
            **airflow_tags()}
    tracked = tracker.open_run(paths.run_name, tags)
    if tracked.status != "tracked":
        return tracker, tracked, {}
    if sweep_params(cfg):  # a proxy run's fraction, a parameter of its own (LLM-Foundry logs the YAML's)
        tracker.log_results(tracked, {}, sweep_params(cfg), [])
    return tracker, tracked, tracker.logger(tracked, paths.run_name, tags, system_metrics=gpus > 0)


@dataclass(frozen=True)
class Attempt:
    """This try of the run as decided before its processes start: what its run manifest records."""

    cfg: TrainConfig
    inputs: TrainInputs  # the verified report, data, model and tokenizer, checked
    paths: RunPaths
    length: TrainLength  # steps and tokens planned
    wanted: dict  # the settings that determine the numbers (a finished run must agree)
    gpus: int  # per node; 0 on the CPU
    mode: str  # "train" or "export" (training finished, the export or manifest did not)
    started: float  # time.time() when the try began


def _run_manifest(attempt: Attempt, outcome: WorkerOutcome, tracked: MlflowRun) -> RunManifest:
    cfg, inputs, paths, length, wanted, gpus = (attempt.cfg, attempt.inputs, attempt.paths, attempt.length,
                                                attempt.wanted, attempt.gpus)
    report, latest = inputs.report, latest_checkpoint(paths.checkpoints)
    return RunManifest(
        run_name=paths.run_name, run_folder=paths.folder, run_id=cfg.run_id, plan=report.plan,
        verify_report=ReportRef(location=cfg.report, sha256=inputs.report_sha256), mix=report.mix,
        concat_tokens=report.concat_tokens, tokenizer=report.tokenizer, framing=inputs.framing, data=inputs.data,
        model=inputs.model, config=cfg, sweep_fraction=cfg.sweep_fraction, settings=wanted,
        settings_fingerprint=settings_fingerprint(wanted),
        train_yaml=paths.yaml, nodes=cfg.nnodes, gpus_per_node=gpus, world_size=outcome.world_size,
        sharding_strategy=sharding_strategy(cfg, gpus), planned_final_step=length.final_step,
        final_step=outcome.final_step, train_tokens=outcome.final_tokens,
        start_step=outcome.start.step if outcome.start else None, last_attempt=attempt.mode,
        checkpoint=latest[0] if latest else None, hf_export=paths.hf,
        attempt_seconds=round(time.time() - attempt.started, 1), metrics=summarize(outcome.history),
        metrics_history=paths.metrics, loss_curve=paths.loss_png, code_version=code_version(),
        finished_at=datetime.now(timezone.utc).isoformat(), mlflow=tracked)


def _resume_point(paths: RunPaths, length: TrainLength, wanted: dict) -> tuple[str, int, list[str]]:
    """``train`` (from the latest complete checkpoint, if any) or ``export`` (training already finished), the
    step it starts from, and the checkpoints a killed attempt left after the latest complete one."""
    latest = latest_checkpoint(paths.checkpoints)
    if latest is not None:
        _check_settings((read_yaml(paths.yaml) or {}).get("variables", {}).get("cpt_settings"), wanted, paths,
                        "started")
    stale = checkpoints_after(paths.checkpoints, latest[1] if latest else 0)
    mode = "export" if latest is not None and latest[1] >= length.final_step else "train"
    say(f"run {paths.run_name}: {length.final_step} steps of {length.tokens_per_step:,} tokens "
        f"({length.max_duration}); " + (f"latest checkpoint at step {latest[1]}" if latest else "no checkpoint yet")
        + ("; training finished, exporting only" if mode == "export" else ""))
    return mode, latest[1] if latest else 0, stale


def _remove_stale(stale: list[str]) -> None:
    """Remove a killed attempt's checkpoints after the latest complete one (Composer refuses to save over them)."""
    if stale:
        say(f"removing {len(stale)} checkpoint(s) after the latest complete one (a killed attempt's)")
    for location in stale:
        remove_checkpoint(location)


def _launch(cfg: TrainConfig, yaml_cfg: dict, paths: RunPaths, mode: str, scratch: Path,
            gpus: int) -> WorkerOutcome | None:
    """Write train.yaml (scratch, and from node 0 the run folder), clean up after dead attempts, run this node's
    training processes; their result (start, final step and tokens, metrics history) on node 0, else None."""
    text = _dump_yaml(yaml_cfg)
    (scratch / "train.yaml").write_text(text)
    first = cfg.node_rank == 0
    if first:
        write_bytes_atomic(paths.yaml, text.encode())
        remove_tree(paths.hf)  # only a dead attempt leaves one; the export is written anew
    if cfg.nnodes == 1 and cfg.nprocs > 1:
        # host-wide, before any rank starts (one process does it itself: worker_argv); every node of a
        # multi-node run starts with a fresh /dev/shm
        clean_stale_shared_memory()
    rendezvous, env = None, {}
    if cfg.nnodes > 1:
        rendezvous = Rendezvous(cfg.nnodes, cfg.node_rank, cfg.master_addr, cfg.master_port)
        if gpus == 0:
            env["FSDP_VERSION"] = "2"  # Composer's FSDP1 needs CUDA; its FSDP2 runs on the CPU with gloo
    return launch(worker_argv(scratch / "train.yaml", mode, cfg.nprocs, scratch / "logs", rendezvous), scratch, JOB,
                  what="the training processes", retry="a retry resumes from the latest checkpoint",
                  result_file=scratch / RESULT_FILE if first else None,  # only global rank 0 writes one
                  result=WorkerOutcome, env=env)


def _result(status: str, paths: RunPaths, manifest: RunManifest) -> TrainResult:
    return TrainResult(status=status, run_name=paths.run_name, run_folder=paths.folder,
                       checkpoint=manifest.checkpoint, hf_export=manifest.hf_export, run_manifest=paths.manifest,
                       plan_fingerprint=manifest.plan.fingerprint, final_step=manifest.final_step,
                       train_tokens=manifest.train_tokens,
                       start_step=None if status == ALREADY_COMPLETE else manifest.start_step,
                       loss_curve=manifest.loss_curve, metrics=manifest.metrics, mlflow=manifest.mlflow)


def _node_result(paths: RunPaths, plan_fingerprint: str, length: TrainLength, start_step: int) -> TrainResult:
    """What a node other than node 0 reports: where the run is (node 0 writes its manifest)."""
    return TrainResult(status="node_done", run_name=paths.run_name, run_folder=paths.folder, checkpoint=None,
                       hf_export=paths.hf, run_manifest=paths.manifest, plan_fingerprint=plan_fingerprint,
                       final_step=length.final_step, train_tokens=length.final_step * length.tokens_per_step,
                       start_step=start_step)


def _dump_yaml(yaml_cfg: dict) -> str:
    import yaml

    header = "# Written by `cpt-tasks train`; LLM-Foundry's train_from_yaml format.\n"
    return header + yaml.safe_dump(yaml_cfg, sort_keys=False)


def read_yaml(location: str) -> dict | None:
    """A YAML mapping stored at ``location`` (local or object storage), or None."""
    import yaml

    data = read_bytes(location)
    try:
        body = yaml.safe_load(data) if data else None
    except yaml.YAMLError:
        return None
    return body if isinstance(body, dict) else None


def _check_settings(found: dict | None, wanted: dict, paths: RunPaths, what: str) -> None:
    """A run folder is resumed only with the settings it was started with."""
    if found is None or found == wanted:
        return
    changed = ", ".join(f"{k} {found.get(k)!r} -> {wanted.get(k)!r}" for k in sorted(set(found) | set(wanted))
                        if found.get(k) != wanted.get(k))
    raise UserError(f"run {paths.folder} was {what} with other settings ({changed}); pass the same settings to "
                    "resume it, or another --run_id for a new run")


def _check_device(cfg: TrainConfig, gpus: int) -> None:
    if gpus and cfg.nprocs > gpus:
        raise UserError(f"--nprocs {cfg.nprocs}: this machine has {gpus} GPU(s)")
    if cfg.device_microbatch_size == "auto" and not (gpus and uses_fsdp(cfg, gpus)):
        raise UserError("--device_microbatch_size auto needs FSDP (more than one GPU); give a number")
    if cfg.sharding_strategy != "auto" and not uses_fsdp(cfg, gpus):
        raise UserError(f"--sharding_strategy {cfg.sharding_strategy}: this run does not shard (FSDP is used "
                        "with more than one GPU, or more than one node)")
    if cfg.sharding_strategy not in ("auto", "FULL_SHARD") and not gpus:
        raise UserError(f"--sharding_strategy {cfg.sharding_strategy} needs GPUs; on the CPU only FULL_SHARD "
                        "(Composer's FSDP2) runs")
    if cfg.attn_implementation == "flash_attention_2":
        import importlib.util

        if not gpus or importlib.util.find_spec("flash_attn") is None:
            raise UserError("--attn_implementation flash_attention_2 needs a GPU and the flash-attn package")


def _check_finished(outcome: WorkerOutcome, length: TrainLength, paths: RunPaths) -> None:
    if outcome.final_step < length.final_step:
        raise RuntimeError(f"training stopped at step {outcome.final_step} of {length.final_step}; a retry "
                           "resumes it")
    problem = hf_export_problem(paths.hf)
    if problem:
        raise RuntimeError(f"{problem}; a retry exports again")


def command(cfg: TrainConfig) -> Outcome:
    """``cpt-tasks train``: train (or resume), the result as the last stdout line (one line of JSON)."""
    result = train(cfg)
    print(result.model_dump_json())
    return Outcome(result)
