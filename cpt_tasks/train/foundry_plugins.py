"""The Composer pieces the generated training YAML names, registered with LLM-Foundry when imported (the YAML
lists this file in ``code_paths``, so stock LLM-Foundry ``train.py`` runs it too).

- ``cpt_metrics`` (a logger destination): one record per batch (loss, lr, tokens/s, MFU, eval losses) kept in
  the checkpoint, so a resumed run's loss curve is whole; a progress line on stderr; the step a run started
  at (``start step N``, the resumed checkpoint's); and the worker's result file at the end. It also gives the
  Hugging Face model LLM-Foundry's MFU formula (6 · params + attention flops per token), which LLM-Foundry
  only defines for its MPT models, so Composer's SpeedMonitor reports MFU on GPUs.
- ``cpt_hf_export``: LLM-Foundry's ``HuggingFaceCheckpointer`` writing the final model (config, safetensors,
  tokenizer) to ``<run>/hf`` instead of ``<run>/huggingface/ba<N>``.
- ``cpt_mlflow``: registered by the run layer's ``cpt_tasks.tracking.mlflow_logger`` (imported here), which the
  evaluation's config names on its own.
"""

from __future__ import annotations

import json
import time
from typing import Any

from composer.callbacks import CheckpointSaver
from composer.core import Event, State
from composer.loggers import Logger, LoggerDestination, RemoteUploaderDownloader
from composer.utils import dist
from llmfoundry.callbacks import HuggingFaceCheckpointer
from llmfoundry.registry import callbacks, loggers

from cpt_tasks.documents import write_document
from cpt_tasks.documents.train_docs import WorkerOutcome
from cpt_tasks.runs import log
from cpt_tasks.storage.urls import parse_url
from cpt_tasks.tracking import mlflow_logger  # noqa: F401 (registers cpt_mlflow)

say = log.teller("train", when=lambda: dist.get_global_rank() == 0)  # one line per run: global rank 0 only

SYMLINK_CHECK_SECONDS = 2.0
_RENAME = {"loss/train/total": "loss", "throughput/tokens_per_sec": "tokens_per_sec",
           "throughput/device/tokens_per_sec": "device_tokens_per_sec", "throughput/device/mfu": "mfu"}


def transformer_flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int) -> float:
    """Training flops per token as LLM-Foundry counts them for MPT: 6·params + 12·layers·d_model·seq."""
    return 6.0 * n_params + 12.0 * n_layers * d_model * seq_len


class RunMetrics(LoggerDestination):
    """Per-batch metrics history (saved in checkpoints), progress lines and the worker's result file."""

    def __init__(self, result_path: str, log_interval: int = 10, planned_steps: int | None = None) -> None:
        self.result_path = result_path
        self.log_interval = log_interval
        self.planned_steps = planned_steps
        self.history: list[dict[str, Any]] = []
        self.start: dict[str, int] | None = None
        self._pending: dict[str, Any] = {}

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        for key, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if key in _RENAME:
                self._pending[_RENAME[key]] = number
            elif key.startswith("lr-") and key.endswith("/group0"):
                self._pending["lr"] = number
            elif key.startswith("metrics/eval/") and key.endswith("/LanguageCrossEntropy") and self.history:
                self.history[-1].setdefault("eval", {})[key.split("/")[2]] = number  # eval follows BATCH_END

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        # Composer runs logger destinations after the other callbacks (SpeedMonitor, LRMonitor, the checkpoint
        # saver) on every event but INIT: so the batch is recorded at BATCH_END, after its metrics are logged,
        # and eval results (logged after BATCH_END) are in the history before BATCH_CHECKPOINT saves it.
        if event == Event.INIT:
            _attach_flops(state)
            _drop_tokenizer_from_checkpoints(state)
            _check_uploads_often(state)
        elif event == Event.AFTER_LOAD:
            step, tokens = int(state.timestamp.batch), int(state.timestamp.token)
            self.history = [r for r in self.history if r["step"] <= step]
            self.start = {"step": step, "tokens": tokens}
            say(f"start step {step} ({tokens:,} tokens)" + (", resumed from checkpoint" if step else ""))
        elif event == Event.BATCH_END:
            self._record(state)
        elif event == Event.BATCH_CHECKPOINT and self.history and "eval" in self.history[-1]:
            record = self.history[-1]
            say(f"eval at step {record['step']}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in sorted(record["eval"].items())))

    def _record(self, state: State) -> None:
        record = {"step": int(state.timestamp.batch), "tokens": int(state.timestamp.token),
                  "time": round(time.time(), 3), **self._pending}
        self._pending = {}
        self.history.append(record)
        step = record["step"]
        if step == 1 or step % self.log_interval == 0 or step == self.planned_steps:
            say(format_progress(record, self.planned_steps))

    def state_dict(self) -> dict[str, Any]:
        # One string, not a list of records: a sharded (torch.distributed.checkpoint) checkpoint stores every
        # leaf as its own entry and loads into the layout of the fresh, empty history ("Missing key in
        # checkpoint state_dict: state.callbacks.RunMetrics.history").
        return {"history_json": json.dumps(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "history_json" in state:
            self.history = list(json.loads(state["history_json"]))
        else:  # a checkpoint written before the history became one string
            self.history = list(state.get("history", []))

    def write_result(self, state: State, mode: str) -> None:
        """Rank 0 writes what the parent needs: start and final step/tokens, the metrics history."""
        if dist.get_global_rank() != 0:
            return
        outcome = WorkerOutcome(mode=mode, start=self.start, final_step=int(state.timestamp.batch),
                                final_tokens=int(state.timestamp.token), world_size=dist.get_world_size(),
                                history=self.history)
        write_document(self.result_path, outcome)


def format_progress(record: dict[str, Any], planned: int | None) -> str:
    """``step 12/40  tokens 12,288  loss 9.8123  lr 2.00e-04  tok/s 1,234  mfu 41.2%``."""
    parts = [f"step {record['step']}" + (f"/{planned}" if planned else ""), f"tokens {record['tokens']:,}"]
    if "loss" in record:
        parts.append(f"loss {record['loss']:.4f}")
    if "lr" in record:
        parts.append(f"lr {record['lr']:.2e}")
    if "tokens_per_sec" in record:
        parts.append(f"tok/s {record['tokens_per_sec']:,.0f}")
    if "mfu" in record:
        parts.append(f"mfu {record['mfu']:.1%}")
    return "  ".join(parts)


def _attach_flops(state: State) -> None:
    """Give the HF model a ``flops_per_batch`` (before FSDP shards the parameters) for SpeedMonitor's MFU."""
    composer_model = state.model
    inner = getattr(composer_model, "model", None)
    config = getattr(inner, "config", None)
    if config is None or hasattr(composer_model, "flops_per_batch"):
        return
    n_params = sum(p.numel() for p in inner.parameters())
    layers, width = config.num_hidden_layers, config.hidden_size

    def flops_per_batch(batch: Any) -> float:
        rows, seq = batch["input_ids"].shape[0:2]
        return transformer_flops_per_token(n_params, layers, width, seq) * rows * seq

    composer_model.flops_per_batch = flops_per_batch


def _drop_tokenizer_from_checkpoints(state: State) -> None:
    """Keep the tokenizer out of the checkpoints. Composer stores its files in every checkpoint
    (``state/integrations/huggingface/tokenizer``); in a sharded checkpoint each of Llama 3's ~131k vocabulary
    and merge entries becomes its own item (a 51 MB ``.metadata``, minutes per save on a CPU). The YAML names
    the tokenizer and the HF export takes it from the model. Saving and autoresume's loading both build the state
    through ``get_metadata``, so they agree (``save_ignore_keys`` would not: autoresume drops the load side's)."""
    model = state.model
    original = getattr(model, "get_metadata", None)
    if original is None or getattr(original, "_cpt_no_tokenizer", False):
        return

    def get_metadata() -> dict:
        metadata = original()
        metadata.pop("tokenizer", None)
        return metadata

    get_metadata._cpt_no_tokenizer = True
    model.get_metadata = get_metadata


def _check_uploads_often(state: State) -> None:
    """Composer publishes an object-storage checkpoint (its ``latest`` symlink) only once the upload is seen,
    checking every 30 s: a retry meanwhile resumes from the one before, and the end of training waits."""
    for callback in state.callbacks:
        if isinstance(callback, CheckpointSaver):
            callback._symlink_upload_wait_before_next_try_in_seconds = SYMLINK_CHECK_SECONDS


class HFExport(HuggingFaceCheckpointer):
    """LLM-Foundry's HF checkpointer, writing to ``<save_folder>/<folder>`` at the end of training."""

    def __init__(self, save_folder: str, folder: str = "hf", save_interval: str = "1dur",
                 precision: str = "float32") -> None:
        super().__init__(save_folder=save_folder, save_interval=save_interval, precision=precision)
        self.huggingface_folder_name_fstr = folder  # the parent's default nests huggingface/ba{batch}
        location = parse_url(save_folder)
        if location.remote:  # upload from threads: the default spawns 4 processes that each import torch
            self.remote_ud = RemoteUploaderDownloader(bucket_uri=f"{location.scheme}://{location.bucket}",
                                                      num_concurrent_uploads=4, use_procs=False)


loggers.register("cpt_metrics", func=RunMetrics)
callbacks.register("cpt_hf_export", func=HFExport)
