"""The LLM-Foundry eval config (``scripts/eval/eval.py``'s format) of one model: one eval loader per subset on
its verified ``val`` split, the ICL task list, and when tracked the model's MLflow run.

The base model and the trained one get the same config but for the model's path and name. Each is evaluated by
its own ``evaluate()`` call: with several ``models`` and ``eval_loaders`` in one call, LLM-Foundry pops each
loader's ``label`` for the first model and fails on the second. The model block is built here, never copied
from training's: training sets ``use_train_metrics: false``, and eval loaders would then get no metrics at all.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cpt_tasks.documents.verify import VerifyReport
from cpt_tasks.layout import VAL
from cpt_tasks.train.foundry_yaml import COMPONENTS, _loader, _location

SEED = 17


def build_eval_yaml(name: str, model_dir: str, tokenizer_dir: str, report: VerifyReport, *, cache: Path,
                    tasks_yaml: str | None, batch_size: int, subset_batches: int, icl_batches: int | None,
                    precision: str, gpu: bool, mlflow_logger: dict) -> dict:
    """The eval config of one model (a dict ready for yaml.safe_dump); ``name`` is its Composer run name."""
    concat = report.concat_tokens
    config: dict = {
        "run_name": name,
        "seed": SEED,
        "max_seq_len": concat,  # the rows' length; the default tasks set their own
        "device_eval_batch_size": batch_size,
        "precision": precision,
        "dist_timeout": 600,
        "python_log_level": "info",
        "code_paths": [importlib.util.find_spec(COMPONENTS).origin],  # registers cpt_mlflow
        "models": [{"model_name": name, "model": model_block(model_dir),
                    "tokenizer": {"name": tokenizer_dir, "kwargs": {"model_max_length": concat}}}],
        "eval_subset_num_batches": subset_batches,
        "eval_loaders": [
            {**_loader({**_location(s.out_root, VAL, cache / s.fingerprint[:16] / s.name), "shuffle": False,
                        "max_seq_len": concat}, 0, gpu, False), "label": s.name}
            for s in report.subsets if s.val_tokens > 0],
    }
    if icl_batches is not None:
        config["icl_subset_num_batches"] = icl_batches
    if tasks_yaml is not None:
        config["icl_tasks"] = tasks_yaml  # a local file: LLM-Foundry open()s it
    if mlflow_logger:
        config["loggers"] = mlflow_logger
    return config


def model_block(model_dir: str) -> dict:
    """A Hugging Face causal LM from a local folder, with its eval metrics (loss, perplexity, token accuracy)."""
    return {"name": "hf_causal_lm", "pretrained_model_name_or_path": model_dir, "pretrained": True,
            "init_device": "cpu", "trust_remote_code": False, "attn_implementation": "sdpa"}
