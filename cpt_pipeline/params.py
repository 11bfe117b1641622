"""The trigger form: every Param of ``cpt_dolmino`` with a title, a description and a JSON schema.

The Params that feed a job come from the registry (``cpt_tasks.jobs``: which field each feeds, its title and
section, what the form adds) and take their default, bounds and description from that field, through pydantic's
JSON schema of the field, so the form and the CLI cannot disagree. A job's options Param (``train_options``,
``evaluate_options``) accepts exactly the fields no Param, the DAG or the runner sets, and ``convert_options``
exactly the conversion options the plan does not derive. The pipeline's own Params (storage, policies, GPUs,
resources, deadlines) are defined here.

JSON Schema cannot say "the proportions sum to 1", so the ``proportions`` Param carries the custom format
``proportions-sum-to-1``. :func:`register_formats` teaches jsonschema's ``FormatChecker`` that format; every
Airflow process calls it through ``airflow_local_settings`` (and the DAG file on import), so the API server
rejects a bad mix when the run is triggered, before any task runs. The plan step checks it again.

Every step has a deadline Param (``plan_timeout`` … ``evaluate_timeout``, hours, in Resources): the operators
apply the run's value as the task's ``execution_timeout`` when the task starts (:func:`step_timeout`), so no
run can hang forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from cpt_tasks.errors import UserError
from cpt_pipeline.dag_shapes import DEFAULT_PROXY_MODEL, DEFAULT_PROXY_TOKENS, DEFAULT_SWEEP_FRACTIONS, DOLMINO, \
    REPLAY_SWEEP, SHAPES, DagShape, set_by_some_dag
from cpt_tasks.jobs import DATA, DOMAIN, EVALUATION, JOBS, MIX_FORMAT, RESOURCES, SWEEP, TRAINING
from cpt_tasks.mix import check_proportions

TRAIN_POLICIES = ("if_changed", "always", "never")
EVALUATE_POLICIES = ("if_trained", "always", "never")
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"  # a Kubernetes resource quantity
_SCHEMA_KEYS = ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "pattern")


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


def field_schema(model: type[BaseModel], name: str) -> dict:
    """A config field as a Param's schema: its default, description, type and bounds (an optional field's
    ``anyOf [X, null]`` becomes ``type: [X, "null"]``, which the trigger form renders)."""
    field = model.model_json_schema()["properties"][name]
    schema = {"default": model.model_fields[name].get_default(call_default_factory=True),
              "description": model.model_fields[name].description}
    options = field.get("anyOf", [field])
    types = [o["type"] for o in options if "type" in o]
    schema["type"] = types[0] if len(types) == 1 else types
    for option in options:
        schema.update({k: v for k, v in option.items() if k in _SCHEMA_KEYS and k != "type"})
    return schema


def job_params(shape: DagShape = DOLMINO) -> dict[str, dict]:
    """The Params that feed the config fields of the DAG's jobs, from the registry, each with its field's schema,
    the form's title and section and what the registry's form adds, under the DAG's name for it; then each job's
    options Param (its other fields)."""
    params: dict[str, dict] = {}
    for job in JOBS:
        if job.step not in shape.steps:
            continue
        for name, param in job.params.items():
            if name in shape.drop:
                continue
            params[shape.renames.get(name, name)] = {
                **field_schema(job.config, param.field), "title": param.title, "section": param.section,
                **(param.form() if param.form else {}), **SHAPE_FORMS.get((shape.dag_id, name), {})}
        if job.options:
            allowed = [f for f in job.option_fields() if f not in set_by_some_dag(job.step)]
            params[job.options.name] = {"default": {}, "type": "object", "propertyNames": {"enum": allowed},
                                        "title": job.options.title, "section": job.options.section,
                                        "description": f"{job.options.description} Allowed: {', '.join(allowed)}."}
    return params


# What a DAG says differently about a Param it renames: (dag, the registry's Param name) -> form keys.
SHAPE_FORMS = {
    (REPLAY_SWEEP.dag_id, "total_tokens"): {
        "title": "Tokens per proxy run", "default": DEFAULT_PROXY_TOKENS, "section": SWEEP,
        "description": "Train tokens of each proxy run (the domain and the replay in the run's fraction)."},
    (REPLAY_SWEEP.dag_id, "model"): {
        "title": "Proxy model", "default": DEFAULT_PROXY_MODEL, "section": SWEEP,
        "description": "The small model each proxy run continues from: the same tokenizer as the big run (for "
                       "Llama 3, the Llama 3.2 1B family)."},
}


def sweep_params() -> dict[str, dict]:
    """The replay sweep's own Params (the recommend job's come from the registry)."""
    return {"sweep_fractions": {
        "default": list(DEFAULT_SWEEP_FRACTIONS), "type": "array", "minItems": 2, "uniqueItems": True,
        "items": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}, "title": "Replay fractions",
        "section": SWEEP, "description": "One proxy run per replay fraction (0: the corpus alone); each component "
                                         "is converted once, at the largest budget any of them needs."}}


def pipeline_params(storage_root: str, shape: DagShape = DOLMINO) -> dict[str, dict]:
    """The Params of the pipeline itself, not of one job: where everything is stored, whether to train and
    evaluate, the GPUs (each training process's device)."""
    return {name: schema for name, schema in _pipeline_params(storage_root).items() if name not in shape.drop}


def _pipeline_params(storage_root: str) -> dict[str, dict]:
    return {
        "storage_root": {"default": storage_root, "type": "string", "pattern": r"^(s3://|gs://|/)\S+$",
                         "title": "Storage root", "section": DATA,
                         "description": "Object storage (s3://, gs://) or absolute path for data, plans, "
                                        "reports and checkpoints."},
        "train": {"default": "if_changed", "type": "string", "enum": list(TRAIN_POLICIES),
                  "title": "Train", "section": TRAINING,
                  "description": "if_changed: only when this data has not been trained on yet; always; never."},
        "gpus": {"default": 8, "type": "integer", "minimum": 0, "maximum": 64, "title": "GPUs", "section": TRAINING,
                 "description": "GPUs of each training pod, i.e. of each node (one process each); 0 trains on "
                                "the CPU."},
        "evaluate": {"default": "if_trained", "type": "string", "enum": list(EVALUATE_POLICIES),
                     "title": "Evaluate", "section": EVALUATION,
                     "description": "if_trained: after training ran in this run; always (the plan's newest "
                                    "finished run when training was skipped); never."},
    }


def _resource_params(shape: DagShape) -> dict[str, dict]:
    return {
        "convert_cpu": {"default": 8, "type": "integer", "minimum": 1, "maximum": 256,
                        "title": "Conversion CPUs", "section": RESOURCES,
                        "description": "CPU request/limit of each conversion pod = its tokenizer processes."},
        "convert_memory": {"default": "16Gi", "type": "string", "pattern": QUANTITY,
                           "title": "Conversion memory", "section": RESOURCES,
                           "description": "Memory request/limit of each conversion pod."},
        "train_cpu": {"default": 32, "type": "integer", "minimum": 1, "title": "Training CPUs", "section": RESOURCES,
                      "description": "CPU request of the training pod."},
        "train_memory": {"default": "512Gi", "type": "string", "pattern": QUANTITY,
                         "title": "Training memory", "section": RESOURCES,
                         "description": "Memory request/limit of the training pod."},
        "shm_size": {"default": "64Gi", "type": "string", "pattern": QUANTITY, "title": "Training /dev/shm",
                     "section": RESOURCES, "description": "Size of the training pod's memory-backed /dev/shm."},
        **_timeout_params(shape),
    }


def _timeout_params(shape: DagShape) -> dict[str, dict]:
    return {param: {"default": hours, "type": "number", "exclusiveMinimum": 0, "maximum": 24 * 90,
                    "title": f"{step.capitalize()} deadline (hours)", "section": RESOURCES,
                    "description": f"Hours one try of each {step} task may run before Airflow stops it "
                                   "(execution_timeout); the try then fails and is retried."}
            for step, (param, hours) in step_timeouts().items() if step in shape.steps}


def step_timeouts() -> dict[str, tuple[str, float]]:
    """Each step's deadline Param and its default (hours), from the registry: step -> (Param, hours)."""
    return {job.step: (f"{job.step}_timeout", job.pod.timeout_hours) for job in JOBS if job.step}


def step_timeout(task_id: str, params: dict | None = None) -> timedelta | None:
    """The deadline of a step's task: the run's Param value, or its default (None for an unknown task)."""
    timeouts = step_timeouts()
    if task_id not in timeouts:
        return None
    param, hours = timeouts[task_id]
    value = (params or {}).get(param, hours)
    return timedelta(hours=float(value if value is not None else hours))


def param_schemas(storage_root: str, shape: DagShape = DOLMINO) -> dict[str, dict]:
    """name -> (default + JSON schema + title/description/section) of every Param of the DAG ``shape``,
    production defaults."""
    params = {**job_params(shape), **pipeline_params(storage_root, shape), **_resource_params(shape)}
    if shape is REPLAY_SWEEP:
        params.update(sweep_params())
    order = (DATA, DOMAIN, SWEEP, TRAINING, EVALUATION, RESOURCES)  # the form's sections, each in this order
    return dict(sorted(params.items(), key=lambda item: order.index(item[1]["section"])))


def unknown_names(given: Iterable[str], known: Iterable[str]) -> list[str]:
    """The names in ``given`` that are not ``known``, each quoted, with the closest known name when one is close:
    ``'domian' (did you mean 'domain'?)``."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return []
    import difflib  # only when there is something to suggest (the DAG file imports this module)

    return [f"{name!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(
        name, known, n=1, cutoff=0.6)) else "") for name in unknown]


def unknown_params(conf: Mapping, known: Iterable[str]) -> str | None:
    """Why a run's conf cannot be taken: the names in it that are no Param (each with the closest Param's name
    when one is close), or None when every name is known. Airflow itself would keep an unknown name as a Param
    of its own and run on the defaults, silently."""
    named = unknown_names(conf, known)
    if not named:
        return None
    return (f"unknown Param{'s' if len(named) > 1 else ''} {', '.join(named)} in the run's conf; every Param: "
            "docs/pipeline.md#params-the-trigger-form")


def unknown_options(conf: Mapping, schemas: Mapping[str, dict]) -> str | None:
    """Why an options Param of ``conf`` (``train_options``, ``convert_options``, …) cannot be taken: the keys it
    does not allow, each with the closest allowed one; None when every key is allowed. (The schema refuses them
    too, but lists every allowed key instead of the one meant.)"""
    for name, value in conf.items():
        allowed = (schemas.get(name) or {}).get("propertyNames", {}).get("enum")
        if allowed and isinstance(value, Mapping) and (named := unknown_names(value, allowed)):
            return f"{name}: unknown option{'s' if len(named) > 1 else ''} {', '.join(named)}"
    return None


def build_params(storage_root: str, overrides: dict | None = None, shape: DagShape = DOLMINO) -> dict:
    """The DAG's Params: :func:`param_schemas` with ``overrides`` replacing defaults (unknown names are left out
    when another DAG of the pipeline has them, else fail)."""
    from airflow.sdk import Param

    register_formats()
    schemas = param_schemas(storage_root, shape)
    elsewhere = {name for other in SHAPES if other is not shape for name in param_schemas(storage_root, other)}
    overrides = {k: v for k, v in (overrides or {}).items() if k in schemas or k not in elsewhere}
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
