"""The LLM-Foundry eval config (``scripts/eval/eval.py``'s format) of one model: one eval loader per subset on
its verified ``val`` split, the ICL task list, and when tracked the model's MLflow run.

The base model and the trained one get the same config but for the model's path and name. Each is evaluated by
its own ``evaluate()`` call: with several ``models`` and ``eval_loaders`` in one call, LLM-Foundry pops each
loader's ``label`` for the first model and fails on the second. The model block is built here, never copied
from training's: training sets ``use_train_metrics: false``, and eval loaders would then get no metrics at all.
"""

from __future__ import annotations

from cpt_tasks.evaluate.evaluation import Evaluation
from cpt_tasks.runs.foundry_pieces import MLFLOW_LOGGER, code_path, eval_loaders

SEED = 17


def build_eval_yaml(ev: Evaluation, role: str, mlflow_logger: dict) -> dict:
    """The eval config of the ``base`` or ``trained`` model (a dict ready for yaml.safe_dump)."""
    name, model_dir, cfg, report = f"{ev.name}-{role}", str(ev.staged.model_dir(role)), ev.cfg, ev.report
    concat = report.concat_tokens
    tasks_yaml = str(ev.tasks_yaml) if ev.tasks_yaml else None
    config: dict = {
        "run_name": name,
        "seed": SEED,
        "max_seq_len": concat,  # the rows' length; the default tasks set their own
        "device_eval_batch_size": cfg.device_eval_batch_size,
        "precision": ev.precision,
        "dist_timeout": 600,
        "python_log_level": "info",
        "code_paths": [code_path(MLFLOW_LOGGER)],  # registers cpt_mlflow
        "models": [{"model_name": name, "model": model_block(model_dir),
                    "tokenizer": {"name": str(ev.staged.tokenizer_dir), "kwargs": {"model_max_length": concat}}}],
        "eval_subset_num_batches": cfg.eval_subset_num_batches,
        "eval_loaders": eval_loaders(report, ev.data_cache, ev.gpus > 0),
    }
    if cfg.icl_subset_num_batches is not None:
        config["icl_subset_num_batches"] = cfg.icl_subset_num_batches
    if tasks_yaml is not None:
        config["icl_tasks"] = tasks_yaml  # a local file: LLM-Foundry open()s it
    if mlflow_logger:
        config["loggers"] = mlflow_logger
    return config


def model_block(model_dir: str) -> dict:
    """A Hugging Face causal LM from a local folder, with its eval metrics (loss, perplexity, token accuracy)."""
    return {"name": "hf_causal_lm", "pretrained_model_name_or_path": model_dir, "pretrained": True,
            "init_device": "cpu", "trust_remote_code": False, "attn_implementation": "sdpa"}
