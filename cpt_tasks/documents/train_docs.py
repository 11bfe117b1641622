"""A training run's documents: ``run-manifest.json`` (written last: the run finished), the finished-run
pointer of a plan, and the result ``cpt-tasks train`` hands to the DAG."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field

from cpt_tasks.configs.config_base import StrictModel
from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.documents.document_base import Document
from cpt_tasks.documents.convert_docs import Framing
from cpt_tasks.documents.plan_docs import PlannedTokenizer, PlanRef


class FinishedRun(Document):
    """``<save_root>/finished/<plan fingerprint>.json``: the newest finished training run of a plan (the DAG
    skips training on data that was already trained on)."""

    FORMAT = "cpt-pipeline/finished-run/v1"
    KIND = "a finished-run pointer"

    run_name: str
    run_folder: str
    run_manifest: str = Field(description="Location of the run's manifest")
    plan_fingerprint: str
    final_step: int
    train_tokens: int
    checkpoint: str | None
    hf_export: str
    finished_at: str


class ReportRef(StrictModel):
    """The verification report a run trained on."""

    location: str
    sha256: str


class ConsumedData(StrictModel):
    """One subset a run trained on, as verified."""

    subset: str
    manifest: str = Field(description="Location of the conversion manifest")
    fingerprint: str
    manifest_sha256: str
    out_root: str
    proportion: float
    train_tokens: int
    val_tokens: int
    role: Literal["replay", "domain"] = Field("replay", description="replay: general data; domain: the corpus "
                                              "being learned")
    epochs: float = Field(1.0, description="Times the run saw each of its train rows (a repeated domain corpus)")


class ModelSource(StrictModel):
    """Where the pretrained model came from."""

    source: str = Field(description="--model as given")
    path: str | None = Field(None, description="The local folder it was read from")
    revision: str | None = Field(None, description="The hub commit (hub models)")


class MlflowRun(StrictModel):
    """A step's MLflow run: where to find it, or why there is none (tracking never fails a step)."""

    status: Literal["tracked", "unreachable", "off"] = Field(description="tracked; unreachable (the store did "
                                                             "not answer the pre-flight: a warning, no run); off "
                                                             "(no MLFLOW_TRACKING_URI)")
    tracking_uri: str | None = Field(None, description="The tracking store, without credentials")
    experiment_id: str | None = None
    run_id: str | None = None
    run_url: str | None = Field(None, description="The run's page in the MLflow UI")
    error: str | None = Field(None, description="Why the store was unreachable")


class RunManifest(Document):
    """``<run folder>/run-manifest.json``: lineage (plan, report, every data manifest, model, code) and the
    outcome (steps, tokens, metrics) of a finished run; written last."""

    FORMAT = "cpt-pipeline/run-manifest/v2"
    KIND = "a training run manifest"

    run_name: str
    run_folder: str
    run_id: str = Field(description="The pipeline run id")
    plan: PlanRef
    verify_report: ReportRef
    mix: str
    concat_tokens: int
    tokenizer: PlannedTokenizer
    framing: Framing = Field(description="The special tokens around every document of the data")
    data: list[ConsumedData]
    model: ModelSource
    config: TrainConfig
    sweep_fraction: float | None = Field(None, description="A replay sweep's proxy run: the replay fraction whose "
                                         "draw it trained on (None: a plain run of the plan's mix)")
    settings: dict[str, Any] = Field(description="What a resumed checkpoint must agree with")
    settings_fingerprint: str
    train_yaml: str = Field(description="Location of the LLM-Foundry config")
    nodes: int = Field(1, ge=1, description="Machines the run trained on")
    gpus_per_node: int = Field(ge=0, validation_alias=AliasChoices("gpus_per_node", "gpus"),
                               description="GPUs of each machine (0: CPU); run manifests before multi-node "
                               "training called it gpus")
    world_size: int | None = Field(description="Training processes over all machines")
    sharding_strategy: str | None = Field(None, description="FSDP's sharding strategy (None: no FSDP); several "
                                          "nodes always shard, and checkpoint sharded")
    planned_final_step: int
    final_step: int
    train_tokens: int
    start_step: int | None = Field(description="Where the last attempt started (0: from the pretrained model)")
    last_attempt: Literal["train", "export"]
    checkpoint: str | None
    hf_export: str
    attempt_seconds: float
    metrics: dict[str, Any] = Field(description="Headline metrics (losses, speed)")
    metrics_history: str = Field(description="Location of metrics.jsonl")
    loss_curve: str = Field(description="Location of loss.png")
    code_version: dict[str, str]
    finished_at: str
    mlflow: MlflowRun | None = Field(None, description="The run's MLflow run (None: written before tracking "
                                     "existed)")


class TrainResult(Document):
    """The result of ``cpt-tasks train`` (its last stdout line, and the DAG's XCom)."""

    FORMAT = "cpt-pipeline/train-result/v1"
    KIND = "a training result"

    status: Literal["trained", "resumed", "already_complete", "node_done"] = Field(
        description="node_done: a node other than node 0 of a multi-node run finished its part (node 0 reports "
        "the run)")
    run_name: str
    run_folder: str
    checkpoint: str | None
    hf_export: str
    run_manifest: str
    plan_fingerprint: str
    final_step: int
    train_tokens: int
    start_step: int | None = None
    loss_curve: str | None = None
    metrics: dict[str, Any] = {}
    mlflow: MlflowRun | None = None


class StartPoint(StrictModel):
    """Where the training processes started: step and tokens of the checkpoint resumed (0: none)."""

    step: int
    tokens: int


class WorkerOutcome(Document):
    """What the training processes hand back to ``cpt-tasks train`` (written by global rank 0 at the end)."""

    FORMAT = "cpt-pipeline/train-worker-result/v1"
    KIND = "a training processes' result"

    mode: Literal["train", "export"]
    start: StartPoint | None
    final_step: int
    final_tokens: int
    world_size: int
    history: list[dict[str, Any]] = Field(description="One record per step: loss, lr, speed, eval losses")
