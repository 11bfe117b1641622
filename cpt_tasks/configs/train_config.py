"""``TrainConfig``: the arguments of ``cpt-tasks train`` (light core: no heavy imports).

Defaults suit a real multi-GPU continual-pretraining run; the CPU demo and the tests pass small values.
Durations use Composer's units: ``<int>tok``, ``<int>ba`` and ``<fraction>dur``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cpt_tasks.configs.config_base import StrictModel

_INT = r"[0-9][0-9_]*"
DURATION = re.compile(rf"^{_INT}(tok|ba)$")
SCHEDULE_TIME = re.compile(rf"^({_INT}(tok|ba)|(0|1|0?\.[0-9]+|1\.0*)dur)$")
NONE_WORDS = ("", "none", "null")
DEFAULT_MODEL = "meta-llama/Llama-3.1-8B"  # the reference recipe continues pretraining the base model
SHARDING_STRATEGIES = ("auto", "FULL_SHARD", "HYBRID_SHARD", "SHARD_GRAD_OP", "NO_SHARD")


def _clean_duration(value: object, pattern: re.Pattern, what: str) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip().replace("_", "")
    if not pattern.match(text):
        raise ValueError(f"{value!r} is not {what}")
    return text


class TrainConfig(StrictModel):
    """Arguments of ``cpt-tasks train``."""

    report: str = Field(description="The verify-report.json written by `cpt-tasks verify` (local path or URL)")
    model: str = Field(DEFAULT_MODEL, description="Pretrained model to continue from: HF hub id, or a local, "
                       "s3:// or gs:// folder with config.json and weights")
    model_revision: str | None = Field(None, description="Hub revision of --model (branch, tag or commit)")
    save_root: str = Field(description="Where runs go (local path, s3:// or gs://): <root>/<run_name>/ and "
                           "<root>/finished/<plan fingerprint>.json")
    run_id: str = Field(min_length=1, description="The pipeline run's id; with the plan fingerprint it names the "
                        "run folder, so retries of one pipeline run resume it")
    nprocs: int = Field(1, ge=1, description="Training processes on this machine, one per GPU (>1: the Composer "
                        "launcher; gloo on CPU)")
    global_batch_size: int = Field(512, ge=1, description="Rows (sequences of concat_tokens) per optimizer step, "
                                   "over all processes")
    device_microbatch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        2, description="Rows per forward/backward on one device, or auto (the largest that fits; needs FSDP, "
        "i.e. more than one GPU)")
    device_eval_batch_size: int | None = Field(None, ge=1, description="Rows per eval step on one device "
                                               "(default: the microbatch size, 1 with auto)")
    max_duration: str | None = Field(None, description="Training length, <int>tok or <int>ba (default: the "
                                     "verified train total in tokens, one pass over the mix)")
    lr: float = Field(3e-5, gt=0, description="Peak learning rate (decoupled AdamW)")
    warmup: str = Field("0.01dur", description="Linear warmup: <fraction>dur, <int>tok or <int>ba")
    decay: str = Field("1dur", description="Cosine decay ends here (t_max): <fraction>dur, <int>tok or <int>ba")
    lr_final_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate as a fraction of --lr")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay")
    grad_clip: float = Field(1.0, ge=0, description="Clip the gradient norm to this (0: no clipping)")
    eval_interval: str = Field("1000ba", description="Evaluate on every subset's val split this often "
                               "(<int>ba, <int>tok or <fraction>dur); also at the end")
    eval_subset_num_batches: int = Field(-1, ge=-1, description="Eval batches per subset (-1: all of val)")
    save_interval: str = Field("1000ba", description="Checkpoint this often (<int>ba, <int>tok or "
                               "<fraction>dur); also at the end")
    save_num_checkpoints_to_keep: int = Field(1, ge=1, description="Checkpoints kept on local disk (object "
                                              "storage keeps all)")
    seed: int = Field(17, ge=0, description="Seed of model init, data order and dropout")
    num_workers: int = Field(8, ge=0, description="Dataloader worker processes per training process")
    precision: Literal["auto", "amp_bf16", "fp32"] = Field(
        "auto", description="auto: amp_bf16 on GPU, fp32 on CPU")
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = Field(
        "sdpa", description="Attention kernel of the Hugging Face model")
    activation_checkpointing: bool = Field(True, description="Recompute activations in backward (with FSDP, "
                                           "i.e. more than one GPU)")
    compile: bool = Field(False, description="torch.compile the model (GPU)")
    log_interval: int = Field(10, ge=1, description="A progress line (loss, tokens/s, MFU) every this many batches")
    local_dir: str | None = Field(None, description="Local scratch for the data cache, the staged model and the "
                                  "worker's files (default: $TMPDIR/cpt-train)")
    sweep_fraction: float | None = Field(None, ge=0, lt=1, description="One proxy run of a replay sweep (the DAG "
                                         "cpt_replay_sweep): train on this replay fraction's draw from the sweep's "
                                         "verified data (--report must be a sweep's), one pass by default")
    nnodes: int = Field(1, ge=1, le=1024, description="Machines (nodes) to train on, each running `cpt-tasks "
                        "train` with its --node_rank; more than 1: FSDP with sharded checkpoints on storage every "
                        "node sees (in the DAG: an Indexed Job of that many pods)")
    node_rank: int = Field(0, ge=0, description="This machine's rank, 0 to nnodes-1 (in an Indexed Job: the pod's "
                           "JOB_COMPLETION_INDEX); node 0 hosts the rendezvous and writes the run's record")
    master_addr: str = Field("127.0.0.1", min_length=1, description="Node 0's host name or IP, reachable from "
                             "every node (with --nnodes > 1)")
    master_port: int = Field(29500, ge=1024, le=65534, description="Node 0's rendezvous port (torch's store); the "
                             "nodes' pre-launch agreement uses the next port")
    dist_timeout: float = Field(600, ge=10, description="Seconds a training process waits for the others in a "
                                "collective: a dead or hung node fails the run (exit 1, retried) after at most "
                                "this long; it must exceed rank 0's longest solo phase (upload waits, HF export)")
    node_wait: float = Field(1800, gt=0, description="Seconds the nodes wait for each other before training (a "
                             "node's pod may wait for a GPU node to scale up)")
    sharding_strategy: Literal[SHARDING_STRATEGIES] = Field(  # type: ignore[valid-type]
        "auto", description="FSDP sharding on GPUs: auto = HYBRID_SHARD with --nnodes > 1 and more than one GPU "
        "per node (shard within a node, replicate across nodes), else FULL_SHARD; the CPU has only FULL_SHARD")

    @field_validator("max_duration", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS):
            return None
        value = _clean_duration(value, DURATION, "a duration like 1000000tok or 500ba")
        if isinstance(value, str) and int(value.rstrip("tokba")) == 0:
            raise ValueError("must be more than 0")
        return value

    @field_validator("sweep_fraction", mode="before")
    @classmethod
    def _no_fraction(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in NONE_WORDS:
            return None
        return value

    @field_validator("warmup", "decay", "eval_interval", "save_interval", mode="before")
    @classmethod
    def _schedule_time(cls, value: object) -> object:
        return _clean_duration(value, SCHEDULE_TIME, "a time like 0.05dur, 1000000tok or 500ba")

    @field_validator("eval_interval", "save_interval", "decay")
    @classmethod
    def _positive(cls, value: str) -> str:
        if float(re.sub(r"(tok|ba|dur)$", "", value)) == 0:
            raise ValueError("must be more than 0")
        return value

    @property
    def world_size(self) -> int:
        """Training processes over all nodes."""
        return self.nprocs * self.nnodes

    @model_validator(mode="after")
    def _batches(self) -> TrainConfig:
        processes = "nprocs" if self.nnodes == 1 else "nprocs x nnodes"
        if self.global_batch_size % self.world_size:
            raise ValueError(f"global_batch_size ({self.global_batch_size}) must be a multiple of {processes} "
                             f"({self.world_size})")
        per_device = self.global_batch_size // self.world_size
        if self.device_microbatch_size != "auto" and self.device_microbatch_size > per_device:
            raise ValueError(f"device_microbatch_size ({self.device_microbatch_size}) is larger than the "
                             f"batch of one device ({per_device} = global_batch_size / {processes})")
        return self

    @model_validator(mode="after")
    def _nodes(self) -> TrainConfig:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank ({self.node_rank}) must be less than nnodes ({self.nnodes})")
        if self.sharding_strategy == "HYBRID_SHARD" and self.nnodes == 1:
            raise ValueError("sharding_strategy HYBRID_SHARD replicates across nodes: it needs nnodes > 1")
        return self
