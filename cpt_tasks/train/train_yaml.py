"""The LLM-Foundry ``train_from_yaml`` config of a run, built from the verification report and the arguments.

One ``streams`` entry per subset (``split: train``, the plan's ``proportion``; ``choose`` rows when a domain
corpus smaller than its budget repeats; in a replay sweep's proxy run its draw's ``choose`` rows, a component
drawing none left out: ``cpt_tasks.train.sweep_draw``), one eval loader per subset on ``val`` (a proxy run's
too: forgetting is measured on every subset), ``max_seq_len = concat_tokens``, checkpoints with autoresume
under the run folder, and on GPUs bf16 — with FSDP (FULL_SHARD, activation checkpointing) when there is more
than one. A run over several nodes always uses FSDP with sharded checkpoints (every rank writes its shard;
autoresume needs no rank-0-only file): on GPUs HYBRID_SHARD by default (shard within a node, replicate across
nodes), on the CPU Composer's FSDP2 (the launcher sets ``FSDP_VERSION=2``: FSDP1 needs CUDA). The file names
the project's two Composer components in ``code_paths``, so stock LLM-Foundry ``train.py`` runs it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.layout import TRAIN, data_cache
from cpt_tasks.runs.foundry_pieces import code_path, eval_loaders, loader, location
from cpt_tasks.runs.workers import RESULT_FILE
from cpt_tasks.runs.status import RunPaths
from cpt_tasks.train.sweep_draw import chosen_rows, draw_rows, proxy_draw, sweep_settings

COMPONENTS = "cpt_tasks.train.foundry_plugins"  # cpt_metrics, cpt_hf_export and (through the run layer) cpt_mlflow
SPEED_WINDOW = 10


@dataclass(frozen=True)
class TrainLength:
    """How long a run trains: its length in Composer's terms and in optimizer steps."""

    max_duration: str
    final_step: int
    tokens_per_step: int


def train_length(cfg: TrainConfig, report: VerifyReport) -> TrainLength:
    """max_duration (unless given: the verified train total in tokens, or a proxy run's draw: one pass over
    it) and the step training ends at."""
    per_step = cfg.global_batch_size * report.concat_tokens
    draw = proxy_draw(cfg, report)
    total = report.trained_tokens or report.realized_train_tokens
    if draw is not None:
        total = draw_rows(draw) * report.concat_tokens
    duration = cfg.max_duration or f"{total}tok"
    if duration.endswith("ba"):
        return TrainLength(duration, int(duration[:-2]), per_step)
    return TrainLength(duration, math.ceil(int(duration[:-3]) / per_step), per_step)


def in_duration_units(value: str, length: TrainLength) -> str:
    """``value`` (dur, tok or ba) in max_duration's unit: Composer's warmup scheduler needs warmup and t_max in
    one unit, and t_max in ``dur`` becomes max_duration's. A step is always ``tokens_per_step`` tokens."""
    unit = "ba" if length.max_duration.endswith("ba") else "tok"
    if value.endswith("dur") or value.endswith(unit):
        return value
    if unit == "tok":  # value in batches
        return f"{int(value[:-2]) * length.tokens_per_step}tok"
    return f"{math.ceil(int(value[:-3]) / length.tokens_per_step)}ba"


def settings(cfg: TrainConfig, length: TrainLength) -> dict:
    """What a resumed checkpoint must agree with (not how many GPUs of one node or how often to save). Over
    several nodes also the shape of the world: the checkpoints are sharded by it, and streaming's data order
    follows the number of nodes. A replay sweep's proxy run also its fraction (its draw)."""
    keys = ("model", "model_revision", "global_batch_size", "lr", "warmup", "decay", "lr_final_ratio",
            "weight_decay", "grad_clip", "seed", "precision")
    values = {**{k: getattr(cfg, k) for k in keys}, "max_duration": length.max_duration, **sweep_settings(cfg)}
    if cfg.nnodes > 1:
        values.update(nnodes=cfg.nnodes, nprocs=cfg.nprocs)
    return values


def uses_fsdp(cfg: TrainConfig, gpus: int) -> bool:
    """FSDP when training on more than one GPU, and always over several nodes."""
    return cfg.nnodes > 1 or (gpus > 0 and cfg.nprocs > 1)


def sharding_strategy(cfg: TrainConfig, gpus: int) -> str | None:
    """The FSDP sharding strategy the run uses (None: no FSDP). ``auto``: HYBRID_SHARD over several nodes with
    more than one GPU each, else FULL_SHARD (the only one FSDP2 on the CPU has)."""
    if not uses_fsdp(cfg, gpus):
        return None
    if cfg.sharding_strategy != "auto":
        return cfg.sharding_strategy
    return "HYBRID_SHARD" if gpus > 0 and cfg.nnodes > 1 and cfg.nprocs > 1 else "FULL_SHARD"


def settings_fingerprint(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class YamlInputs:
    """Where a run's pieces are: the run folder, the staged model and tokenizer, local scratch, the GPUs."""

    run: RunPaths
    length: TrainLength
    model_dir: str
    tokenizer_dir: str
    scratch: Path
    gpus: int
    mlflow_logger: dict = field(default_factory=dict)  # cpt_mlflow's entry when the run is tracked


def build_yaml(cfg: TrainConfig, report: VerifyReport, where: YamlInputs) -> dict:
    """The complete LLM-Foundry config (a dict ready for yaml.safe_dump)."""
    gpu = where.gpus > 0
    precision = ("amp_bf16" if gpu else "fp32") if cfg.precision == "auto" else cfg.precision
    yaml_cfg: dict = {
        "run_name": where.run.run_name,
        "seed": cfg.seed,
        "max_seq_len": report.concat_tokens,
        "code_paths": [code_path(COMPONENTS)],
        "model": _model(cfg, where, fsdp=uses_fsdp(cfg, where.gpus) and gpu),
        "tokenizer": {"name": where.tokenizer_dir, "kwargs": {"model_max_length": report.concat_tokens}},
        **_data(cfg, report, where.scratch / "data", gpu),
        **_optimization(cfg, where.length),
        "precision": precision,
        **_checkpoints(cfg, where.run),
        "progress_bar": False,
        "log_to_console": False,
        "python_log_level": "info",
        "dist_timeout": cfg.dist_timeout,
        "loggers": _loggers(cfg, where),
        "callbacks": _callbacks(where, precision),
        "variables": {"cpt_settings": settings(cfg, where.length)},
    }
    if uses_fsdp(cfg, where.gpus):
        yaml_cfg["fsdp_config"] = _fsdp_config(cfg, where.gpus)
    if cfg.compile:
        yaml_cfg["compile_config"] = {}
    return yaml_cfg


def _loggers(cfg: TrainConfig, where: YamlInputs) -> dict:
    """The run's record (metrics history, progress, result file) and, when tracked, its MLflow run."""
    return {"cpt_metrics": {"result_path": str(where.scratch / RESULT_FILE),
                            "log_interval": cfg.log_interval, "planned_steps": where.length.final_step},
            **where.mlflow_logger}


def _model(cfg: TrainConfig, where: YamlInputs, fsdp: bool) -> dict:
    return {"name": "hf_causal_lm", "pretrained_model_name_or_path": where.model_dir, "pretrained": True,
            "init_device": "mixed" if fsdp else "cpu", "trust_remote_code": False,
            "attn_implementation": cfg.attn_implementation,
            "use_train_metrics": False}  # a second full-vocabulary cross-entropy per batch; loss is logged


def _data(cfg: TrainConfig, report: VerifyReport, cache: Path, gpu: bool) -> dict:
    """The train loader (one stream per subset, the plan's proportions, or a proxy run's draw) and one eval
    loader per subset."""
    concat = report.concat_tokens
    draw = proxy_draw(cfg, report)
    if draw is None:
        shares = {s.name: _share(s, concat, repeated=report.trained_tokens is not None) for s in report.subsets}
    else:  # exactly the draw's rows from each component; one drawing none has no stream
        shares = {s.name: {"choose": chosen_rows(draw, s.name)} for s in report.subsets
                  if chosen_rows(draw, s.name) > 0}
    streams = {s.name: {**location(s.out_root, TRAIN, data_cache(cache, s.fingerprint, s.name)), **shares[s.name]}
               for s in report.subsets if s.name in shares}
    train_dataset = {"streams": streams, "shuffle": True, "shuffle_seed": cfg.seed, "max_seq_len": concat}
    micro = cfg.device_microbatch_size
    sections = {"train_loader": loader(train_dataset, cfg.num_workers, gpu, True),
                "global_train_batch_size": cfg.global_batch_size, "device_train_microbatch_size": micro,
                "device_eval_batch_size": cfg.device_eval_batch_size or (micro if micro != "auto" else 1),
                "eval_interval": cfg.eval_interval, "eval_subset_num_batches": cfg.eval_subset_num_batches,
                "eval_first": False}
    evals = eval_loaders(report, cache, gpu)
    if evals:
        sections["eval_loaders"] = evals
    return sections


def _share(sub, concat: int, repeated: bool) -> dict:
    """A stream's share: the plan's proportion, or, when a component repeats (a domain corpus smaller than its
    budget), every stream's rows per epoch (Streams' ``choose``: the repeated one draws its rows ``epochs``
    times, the others each row once)."""
    if not repeated:
        return {"proportion": sub.proportion}
    return {"choose": (sub.trained_tokens or sub.train_tokens) // concat}


def _optimization(cfg: TrainConfig, length: TrainLength) -> dict:
    """Length, optimizer, schedule and gradient clipping."""
    sections = {
        "max_duration": length.max_duration,
        "optimizer": {"name": "decoupled_adamw", "lr": cfg.lr, "betas": [0.9, 0.95], "eps": 1.0e-8,
                      "weight_decay": cfg.weight_decay},
        "scheduler": {"name": "cosine_with_warmup", "t_warmup": in_duration_units(cfg.warmup, length),
                      "t_max": in_duration_units(cfg.decay, length), "alpha_f": cfg.lr_final_ratio},
    }
    if cfg.grad_clip > 0:
        sections["algorithms"] = {"gradient_clipping": {"clipping_type": "norm",
                                                        "clipping_threshold": cfg.grad_clip}}
    return sections


def _checkpoints(cfg: TrainConfig, run: RunPaths) -> dict:
    """Checkpoints under the run folder, resumed automatically on a retry."""
    return {"save_folder": run.checkpoints, "save_interval": cfg.save_interval,
            "save_num_checkpoints_to_keep": cfg.save_num_checkpoints_to_keep, "save_overwrite": False,
            "autoresume": True}


def _callbacks(where: YamlInputs, precision: str) -> dict:
    callbacks = {
        "speed_monitor": {"window_size": SPEED_WINDOW},
        "lr_monitor": {},
        "cpt_hf_export": {"save_folder": where.run.folder, "folder": "hf",
                          "precision": "bfloat16" if precision == "amp_bf16" else "float32"},
    }
    if where.gpus > 0:
        callbacks["memory_monitor"] = {}
    return callbacks


def _fsdp_config(cfg: TrainConfig, gpus: int) -> dict:
    """FSDP1 on GPUs; on the CPU (several nodes) what Composer's FSDP2 takes. Without the two degrees Composer
    builds a one-dimensional mesh and silently turns HYBRID_SHARD into FULL_SHARD."""
    state_dict_type = "sharded" if cfg.nnodes > 1 else "full"
    if gpus == 0:
        return {"state_dict_type": state_dict_type, "mixed_precision": "PURE", "activation_checkpointing": False}
    strategy = sharding_strategy(cfg, gpus)
    config = {"sharding_strategy": strategy, "mixed_precision": "PURE",
              "activation_checkpointing": cfg.activation_checkpointing, "activation_checkpointing_reentrant": False,
              "activation_cpu_offload": False, "limit_all_gathers": True, "state_dict_type": state_dict_type,
              "sync_module_states": True, "use_orig_params": True}
    if strategy == "HYBRID_SHARD":
        config.update(data_parallel_replicate_degree=cfg.nnodes, data_parallel_shard_degree=cfg.nprocs)
    return config
