"""The LLM-Foundry YAML pieces that the training config and the eval config share: the code path of a module
that registers components (``code_paths``), where a verified split streams from, a text data loader, and one
eval loader per subset's val split."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.layout import VAL, data_cache
from cpt_tasks.storage import is_remote

MLFLOW_LOGGER = "cpt_tasks.tracking.mlflow_logger"  # registers cpt_mlflow (both jobs' MLflow logger)


def code_path(module: str) -> str:
    """The file of ``module``, for ``code_paths`` (LLM-Foundry imports it in the worker, registering what it
    registers); found without importing it (it imports Composer)."""
    return importlib.util.find_spec(module).origin


def location(out_root: str, split: str, cache: Path) -> dict:
    """A stream's place: the verified folder is the stream's remote, copied into ``cache``. Read in place, a
    local folder would get streaming's decompressed shard copies written into it: verified data stays as it
    was verified."""
    return {"remote": out_root if is_remote(out_root) else str(Path(out_root).resolve()), "local": str(cache),
            "split": split}


def loader(dataset: dict, workers: int, gpu: bool, drop_last: bool) -> dict:
    """A ``text`` data loader over ``dataset`` (LLM-Foundry's streaming text dataset)."""
    built = {"name": "text", "dataset": dataset, "drop_last": drop_last, "num_workers": workers,
             "pin_memory": gpu, "timeout": 0}
    if workers == 0:  # PyTorch refuses a prefetch factor or persistent workers without workers
        built.update(prefetch_factor=None, persistent_workers=False)
    else:
        built.update(prefetch_factor=2, persistent_workers=True)
    return built


def eval_loaders(report: VerifyReport, cache: Path, gpu: bool) -> list[dict]:
    """One eval loader per verified subset with a val split, labelled by the subset (its metrics' names)."""
    return [{**loader({**location(s.out_root, VAL, data_cache(cache, s.fingerprint, s.name)), "shuffle": False,
                       "max_seq_len": report.concat_tokens}, 0, gpu, False), "label": s.name}
            for s in report.subsets if s.val_tokens > 0]
