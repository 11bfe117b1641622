"""The trigger form: every Param of ``cpt_dolmino`` with a title, a description and a JSON schema.

JSON Schema cannot say "the proportions sum to 1", so the ``proportions`` Param carries the custom format
``proportions-sum-to-1``. :func:`register_formats` teaches jsonschema's ``FormatChecker`` that format; every
Airflow process calls it through ``airflow_local_settings`` (and the DAG file on import), so the API server
rejects a bad mix when the run is triggered, before any task runs. The plan step checks it again.
"""

from __future__ import annotations

from typing import Any

from cpt_tasks.errors import UserError
from cpt_tasks.mix import DEFAULT_MIX, DEFAULT_TOTAL_TOKENS, DEFAULT_VAL_FRACTION, check_proportions, load_mix

MIX_FORMAT = "proportions-sum-to-1"  # the name is the error message: "{...} is not a 'proportions-sum-to-1'"
TRAIN_POLICIES = ("if_changed", "always", "never")
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"  # a Kubernetes resource quantity


def proportions_ok(value: Any) -> bool:
    """True for an object of subset -> proportion in (0, 1] summing to 1 (±0.001); the format's check."""
    if not isinstance(value, dict):
        return True  # other types are the schema's "type" keyword's business
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
        return True  # likewise "additionalProperties"
    try:
        check_proportions({k: float(v) for k, v in value.items()}, "proportions")
    except UserError as exc:
        raise ValueError(str(exc)) from None
    return True


def register_formats() -> None:
    """Add the ``proportions-sum-to-1`` format to every ``jsonschema.FormatChecker`` (idempotent)."""
    from jsonschema import FormatChecker

    FormatChecker.checkers[MIX_FORMAT] = (proportions_ok, (ValueError,))


def param_schemas(storage_root: str) -> dict[str, dict]:
    """name -> (default + JSON schema + title/description/section) of every Param, production defaults."""
    mix = load_mix(DEFAULT_MIX)
    names = list(mix.proportions)
    data, train, pods = "Data", "Training", "Resources"
    return {
        "total_tokens": {"default": DEFAULT_TOTAL_TOKENS, "type": "integer", "minimum": 1,
                         "title": "Total train tokens", "section": data,
                         "description": "Train tokens over all subsets; each subset gets proportion × this."},
        "mix": {"default": mix.name, "type": "string", "enum": [mix.name], "title": "Mix", "section": data,
                "description": "The shipped mix whose subsets and default proportions are used."},
        "proportions": {"default": dict(mix.proportions), "type": "object", "format": MIX_FORMAT,
                        "propertyNames": {"enum": names}, "minProperties": 1,
                        "additionalProperties": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                        "title": "Proportions", "section": data,
                        "description": "Subset -> share of the total; must sum to 1 (±0.001). "
                                       "Defaults are the OLMo 2 Dolmino mix."},
        "subsets": {"default": names, "type": "array", "items": {"type": "string", "enum": names},
                    "minItems": 1, "uniqueItems": True, "title": "Subsets", "section": data,
                    "description": "Convert and train on these subsets only; their proportions are renormalized."},
        "dataset": {"default": mix.dataset, "type": "string", "minLength": 1, "title": "Source dataset",
                    "section": data, "description": "Hugging Face dataset id, or a folder of json/jsonl(.zst) "
                                                    "files in the hub layout data/<subset>/…"},
        "revision": {"default": None, "type": ["null", "string"], "title": "Dataset revision", "section": data,
                     "description": "Hub branch, tag or commit (resolved to a commit in the plan); empty = main."},
        "tokenizer": {"default": "meta-llama/Llama-3.1-8B", "type": "string", "minLength": 1,
                      "title": "Tokenizer", "section": data,
                      "description": "Hub id or folder of the Llama 3.1 tokenizer."},
        "concat_tokens": {"default": 8192, "type": "integer", "minimum": 1, "maximum": 131072,
                          "title": "Tokens per row", "section": data,
                          "description": "Row length of the MDS data = the training sequence length."},
        "val_fraction": {"default": DEFAULT_VAL_FRACTION, "type": "number", "minimum": 0, "exclusiveMaximum": 1,
                         "title": "Validation fraction", "section": data,
                         "description": "val_tokens = max_tokens × this, per subset."},
        "seed": {"default": 17, "type": "integer", "title": "Shuffle seed", "section": data,
                 "description": "Seed of every subset's document shuffle."},
        "allow_short": {"default": False, "type": "boolean", "title": "Allow short subsets", "section": data,
                        "description": "Accept a subset whose source runs out before its budget."},
        "storage_root": {"default": storage_root, "type": "string", "pattern": r"^(s3://|gs://|/)\S+$",
                         "title": "Storage root", "section": data,
                         "description": "Object storage (s3://, gs://) or absolute path for data, plans, "
                                        "reports and checkpoints."},
        "train": {"default": "if_changed", "type": "string", "enum": list(TRAIN_POLICIES),
                  "title": "Train", "section": train,
                  "description": "if_changed: only when this data has not been trained on yet; always; never."},
        "model": {"default": "meta-llama/Llama-3.1-8B", "type": "string", "minLength": 1,
                  "title": "Base model", "section": train,
                  "description": "Hugging Face id or folder (local or object storage) of the model to continue."},
        "gpus": {"default": 8, "type": "integer", "minimum": 0, "maximum": 64, "title": "GPUs", "section": train,
                 "description": "GPUs of the training pod (one process each); 0 trains on the CPU."},
        "global_batch_size": {"default": 512, "type": "integer", "minimum": 1, "title": "Global batch size",
                              "section": train, "description": "Rows per optimizer step over all GPUs."},
        "device_microbatch_size": {"default": 2, "type": "integer", "minimum": 1, "title": "Micro-batch",
                                   "section": train, "description": "Rows per forward/backward on one GPU."},
        "max_duration": {"default": None, "type": ["null", "string"], "pattern": r"^[0-9]+(tok|ba)$",
                         "title": "Max duration", "section": train,
                         "description": "e.g. 1000ba or 5000000tok; empty = one pass over the verified tokens."},
        "train_options": {"default": {}, "type": "object", "title": "More training options", "section": train,
                          "description": "Other `cpt-tasks train` options as JSON, e.g. {\"lr\": 1e-5}."},
        "convert_cpu": {"default": 8, "type": "integer", "minimum": 1, "maximum": 256,
                        "title": "Conversion CPUs", "section": pods,
                        "description": "CPU request/limit of each conversion pod = its tokenizer processes."},
        "convert_memory": {"default": "16Gi", "type": "string", "pattern": QUANTITY,
                           "title": "Conversion memory", "section": pods,
                           "description": "Memory request/limit of each conversion pod."},
        "train_cpu": {"default": 32, "type": "integer", "minimum": 1, "title": "Training CPUs", "section": pods,
                      "description": "CPU request of the training pod."},
        "train_memory": {"default": "512Gi", "type": "string", "pattern": QUANTITY,
                         "title": "Training memory", "section": pods,
                         "description": "Memory request/limit of the training pod."},
        "shm_size": {"default": "64Gi", "type": "string", "pattern": QUANTITY, "title": "Training /dev/shm",
                     "section": pods, "description": "Size of the training pod's memory-backed /dev/shm."},
    }


def build_params(storage_root: str, overrides: dict | None = None) -> dict:
    """The DAG's Params: :func:`param_schemas` with ``overrides`` replacing defaults (unknown names fail)."""
    from airflow.sdk import Param

    register_formats()
    schemas = param_schemas(storage_root)
    unknown = sorted(set(overrides or {}) - set(schemas))
    if unknown:
        raise ValueError(f"Param defaults for unknown Params: {', '.join(unknown)}")
    params = {}
    for name, spec in schemas.items():
        spec = dict(spec)
        default = (overrides or {}).get(name, spec.pop("default"))
        spec.pop("default", None)
        params[name] = Param(default, **spec)
    return params
