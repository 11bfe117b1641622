"""``ConvertConfig``: the converter's arguments (the reference notes' names), validated when built."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cpt_tasks.configs.config_base import StrictModel, TokenCount, parse_size
from cpt_tasks.framing import LLAMA3_BOS, LLAMA3_EOS


def default_workers() -> int:
    """Usable CPU cores of this process: its CPU affinity, capped by a cgroup CPU quota (a pod's limit)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup (v2 cpu.max, else v1 cfs quota/period); None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


class ConvertConfig(StrictModel):
    """Arguments of ``cpt-tasks convert``."""

    dataset: str = Field(description="HF hub dataset id, a local .json/.jsonl(.gz/.zst)/.parquet file or folder, "
                         "or an s3:// or gs:// prefix")
    data_subset: str | None = Field(None, description="Subset: hub data/<X>/; locally DIR/data/<X> or DIR/<X>")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of --dataset")
    splits: list[str] = Field(["train"], description="Source split to read (one; val is carved by --val_tokens)")
    text_field: str = Field("text", min_length=1, description="The records' field that holds each document's "
                            "text")
    source_format: Literal["auto", "files", "datasets"] = Field(
        "auto", description="files: JSON lines/parquet files; datasets: datasets.load_dataset(streaming) for any "
        "other hub dataset or local folder; auto: files, else datasets for a hub id without them")
    out_root: str = Field(description="Output folder: local path, s3://bucket/prefix or gs://bucket/prefix")
    tokenizer: str = Field(description="Tokenizer: HF hub id or local folder with tokenizer.json")
    tokenizer_revision: str | None = Field(None, description="Hub revision of --tokenizer (the plan pins a commit)")
    num_workers: int | None = Field(None, ge=0, description="Tokenizer processes (0: in-process; default: the "
                                    "usable cores where it runs)")
    concat_tokens: int = Field(8192, gt=0, description="Tokens per row (the training sequence length)")
    max_tokens: TokenCount | None = Field(None, description="Train budget: floor(max/concat) rows (none: all)")
    val_tokens: TokenCount = Field(0, ge=0, description="Val budget after train: floor(val/concat) rows")
    shuffle: bool = Field(False, description="Shuffle document order (file order + seeded buffer)")
    seed: int = Field(17, ge=0, description="Seed of the shuffle")
    shuffle_buffer: int = Field(10_000, ge=1, description="Documents held by the shuffle buffer (memory: "
                                "this many documents of raw JSON)")
    compression: str = Field("zstd", description="MDS shard compression: zstd, zstd:<1-22> or none")
    size_limit: int = Field(1 << 26, description="Uncompressed bytes per MDS shard, e.g. 64mb or 67108864")
    bos_text: str = Field(LLAMA3_BOS, description="Special token placed before every document")
    eos_text: str = Field(LLAMA3_EOS, description="Special token placed after every document")
    tokenizer_backend: Literal["auto", "tiktoken", "tokenizers"] = Field(
        "auto", description="auto, tiktoken or tokenizers (same ids; auto is fastest)")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a connection to the Hub or "
                                   "object storage (per attempt)")
    read_timeout: float = Field(60.0, gt=0, description="Seconds without a byte from the Hub or object storage "
                                "before an attempt is abandoned")
    max_retries: int = Field(5, ge=0, description="Retries (with backoff) of a failed network call before the "
                             "conversion fails (exit 1)")
    overwrite: bool = Field(False, description="Replace an output of a different conversion at --out_root")
    val_first: bool = Field(False, description="Take val's rows first, then up to --max_tokens of train: for a "
                            "corpus that may hold less than its train budget (training then repeats what train "
                            "holds); the source running out is then expected, not a short conversion")
    parts: int = Field(1, ge=1, description="Split the input's files into this many parts (contiguous in file "
                       "order, balanced by bytes); each part is its own conversion (--part) under "
                       "<out_root>/<split>/part-NNNNN/, with its own share of the budgets")
    part: int = Field(0, ge=0, description="Which part of --parts this conversion reads and writes (0-based)")

    @field_validator("splits")
    @classmethod
    def _one_split(cls, value: list[str]) -> list[str]:
        if len(value) != 1:
            raise ValueError("give exactly one source split (val comes from --val_tokens)")
        return value

    @field_validator("size_limit", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        try:
            size = parse_size(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        except (ValueError, OverflowError):
            size = None
        if size is None:
            raise ValueError("expected bytes, e.g. 64mb, 512kb or 67108864")
        if not 0 < size < 1 << 32:
            raise ValueError("must be between 1 byte and 4gb (MDS offsets are 32-bit)")
        return size

    @field_validator("compression")
    @classmethod
    def _compression(cls, value: str) -> str:
        algo, _, level = value.partition(":")
        has_level = ":" in value
        if value != "none" and (algo != "zstd" or (has_level and not (level.isdigit() and 1 <= int(level) <= 22))):
            raise ValueError("expected zstd, zstd:<level 1-22> or none")
        return value

    @model_validator(mode="after")
    def _budgets(self) -> ConvertConfig:
        if self.part >= self.parts:
            raise ValueError(f"part ({self.part}) must be below parts ({self.parts}): parts are numbered from 0")
        if self.max_tokens is not None and self.max_tokens < self.concat_tokens:
            raise ValueError(f"max_tokens ({self.max_tokens}) is smaller than one row "
                             f"(concat_tokens={self.concat_tokens})")
        if self.val_tokens and self.max_tokens is None:
            raise ValueError("val_tokens needs max_tokens: val is taken after the train budget")
        if 0 < self.val_tokens < self.concat_tokens:
            raise ValueError(f"val_tokens ({self.val_tokens}) is smaller than one row "
                             f"(concat_tokens={self.concat_tokens})")
        return self

    @property
    def workers(self) -> int:
        """Tokenizer processes to start: ``num_workers``, or the usable cores of this machine."""
        return default_workers() if self.num_workers is None else self.num_workers

    @property
    def train_rows(self) -> int | None:
        """Rows in train, or None for everything the source holds."""
        return None if self.max_tokens is None else self.max_tokens // self.concat_tokens

    @property
    def val_rows(self) -> int:
        """Rows in val."""
        return self.val_tokens // self.concat_tokens

    @property
    def mds_compression(self) -> str | None:
        """The compression argument of the MDS writer (None: uncompressed)."""
        return None if self.compression == "none" else self.compression


class ConvertSubsetConfig(StrictModel):
    """Arguments of ``cpt-tasks convert-subset``: one subset of a plan, converted exactly as the plan says."""

    plan: str = Field(description="The plan JSON written by `cpt-tasks plan` (path or URL)")
    subset: str = Field(min_length=1, description="Which planned subset to convert")
    part: int = Field(0, ge=0, description="Which of its parts (a subset converted in parts; 0 otherwise)")
    num_workers: int | None = Field(None, ge=0, description="Override the planned converter processes")
    already_complete_exit: int = Field(0, ge=0, le=255, description="Exit with this status instead of 0 when the "
                                       "subset was already converted (the DAG marks such a task skipped)")
