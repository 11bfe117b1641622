"""Evaluation's documents: ``eval-report.json`` (base vs trained, beside the run's checkpoints; written last,
the completion marker), the result ``cpt-tasks evaluate`` hands to the DAG, what the evaluation process hands
back to its parent, and a base model's results kept for the next evaluation of the same base on the same data
(``base-eval.json``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cpt_tasks.configs.config_base import StrictModel
from cpt_tasks.documents.document_base import Document
from cpt_tasks.documents.plan_docs import PlannedTokenizer
from cpt_tasks.documents.train_docs import MlflowRun, ModelSource, ReportRef

Role = Literal["base", "trained"]
ROLES: tuple[Role, ...] = ("base", "trained")


class EvalSubset(StrictModel):
    """A subset's held-out data, as verified: one eval loader on its val split."""

    name: str
    val_split: str = Field(description="Location of the verified val split (MDS)")
    fingerprint: str
    val_tokens: int
    role: Literal["replay", "domain"] = Field("replay", description="replay: general data (forgetting is measured "
                                              "on it); domain: the corpus being learned (gain is measured on it)")


class EvalTask(StrictModel):
    """One ICL task of the task list (LLM-Foundry's icl_tasks format), as evaluated."""

    label: str
    icl_task_type: str
    num_fewshot: list[int]
    dataset_uri: str = Field(description="Where its examples were read (resolved)")
    sha256: str | None = Field(description="sha256 of the examples file (None: a hub dataset)")
    examples: int | None = Field(None, description="Examples in the file (the generated tasks)")


class EvalTasks(StrictModel):
    """The ICL tasks of an evaluation: the generated default, none, or a user's task list."""

    source: str = Field(description="default, none, or the task list's location as given")
    sha256: str | None = Field(description="sha256 of the user's task list file")
    task_list: str | None = Field(description="The task list used, written into the evaluation's folder")
    tasks: list[EvalTask]
    measures: str = Field(description="What the tasks measure, in words")


class MetricValue(StrictModel):
    """One metric of one model: the value and what it averages over."""

    value: float
    n: int | None = Field(description="Scored tokens (loss) or examples (ICL)")
    correct: int | None = Field(None, description="Correct examples (ICL accuracy)")


class EvalRow(StrictModel):
    """One line of the report: a subset's loss or perplexity, or a task's score, base vs trained."""

    kind: Literal["loss", "icl"]
    name: str = Field(description="Subset (loss) or task label with shots (and category)")
    metric: str = Field(description="LLM-Foundry's metric name")
    key: str = Field(description="The metric's key as LLM-Foundry logs it (metrics/<evaluator>/<metric>)")
    base: MetricValue
    trained: MetricValue
    delta: float = Field(description="trained - base")
    verdict: Literal["better", "worse", "same"]
    lower_is_better: bool


class CptChange(StrictModel):
    """One line of the continual-pretraining summary: a component's held-out loss or an ICL task's score."""

    name: str = Field(description="Component (held-out loss) or ICL task")
    metric: str = Field(description="LanguageCrossEntropy for a component, the task's score metric otherwise")
    base: float
    trained: float
    delta: float = Field(description="trained - base (a fall in loss is a gain; a rise is forgetting)")
    lower_is_better: bool
    verdict: Literal["better", "worse", "same"]


class CptSummary(StrictModel):
    """What continual pretraining gained and what it forgot."""

    gain: list[CptChange] = Field(description="One per domain component (its held-out loss) and per ICL task "
                                  "made from a domain component's held-out data (heldout_<component>), base vs "
                                  "trained")
    forgetting: list[CptChange] = Field(description="One per replay component (held-out loss) and per other ICL "
                                        "task (its replay data's, or general ability), base vs trained")
    domains: list[str] | None = Field(None, description="The run's domain components ([]: none, nothing was meant "
                                      "to be gained; None: a report from before this field, read gain instead)")

    @property
    def has_domain(self) -> bool:
        """The run had a domain corpus (something was meant to be gained)."""
        return bool(self.gain) if self.domains is None else bool(self.domains)


class EvalReport(Document):
    """``<run folder>/eval/<eval fingerprint[:16]>/eval-report.json``: did continual pretraining help, and where."""

    FORMAT = "cpt-pipeline/eval-report/v1"
    KIND = "an evaluation report (the eval-report.json that `cpt-tasks evaluate` writes)"

    eval_fingerprint: str = Field(description="sha256 of everything that determines the numbers")
    plan_fingerprint: str
    run_name: str
    run_folder: str
    run_manifest: ReportRef = Field(description="The training run's manifest (location, sha256)")
    checkpoint: str | None = Field(description="The run's last Composer checkpoint")
    hf_export: str = Field(description="The trained model evaluated (the run's Hugging Face export)")
    base_model: ModelSource = Field(description="The model training started from, evaluated alike")
    tokenizer: PlannedTokenizer
    concat_tokens: int
    subsets: list[EvalSubset]
    tasks: EvalTasks
    settings: dict[str, Any] = Field(description="The evaluation's settings (batch, precision, lengths)")
    rows: list[EvalRow]
    cpt: CptSummary = Field(default_factory=lambda: CptSummary(gain=[], forgetting=[]),
                            description="Gained (domain components and their ICL tasks) and forgotten (replay "
                            "components, the other ICL tasks)")
    metrics_explained: dict[str, str] = Field(description="Metric name -> what it is")
    files: dict[str, str] = Field(description="The report's other files: markdown, png, the eval YAMLs")
    mlflow: MlflowRun
    code_version: dict[str, str]
    seconds: dict[str, float] = Field(description="Wall time per phase")
    created_at: str
    base_reused: str | None = Field(None, description="The base model's results were not computed again but read "
                                    "from this base-eval.json (same base model, data, tasks, settings and code; "
                                    "None: evaluated here)")


class EvaluateResult(Document):
    """The result of ``cpt-tasks evaluate`` (its last stdout line, and the DAG's XCom)."""

    FORMAT = "cpt-pipeline/evaluate-result/v1"
    KIND = "an evaluation result"

    status: Literal["evaluated", "already_complete"]
    report: str
    report_md: str
    report_png: str
    eval_fingerprint: str
    plan_fingerprint: str
    run_folder: str
    hf_export: str
    val_splits: list[str] = Field(description="The val splits evaluated on (lineage inputs)")
    task_files: list[str] = Field(description="The task list and its examples files (lineage inputs)")
    headline: dict[str, Any] = Field(description="Subsets and tasks better / worse, mean val loss base/trained")
    mlflow: MlflowRun


class EvalWorkerOutcome(Document):
    """What the evaluation process hands back: every metric of each model, in the order evaluated."""

    FORMAT = "cpt-pipeline/eval-worker-result/v1"
    KIND = "an evaluation process's result"

    metrics: dict[Role, dict[str, MetricValue]] = Field(description="role -> metric key -> value")
    seconds: dict[str, float] = Field(description="Wall time per model, and the imports")


class BaseEvalResults(Document):
    """``<save root>/base-evals/<key[:16]>/base-eval.json``: a base model's metrics on some held-out data and
    tasks, kept for the next evaluation with the same key (a replay sweep's proxy runs share one base)."""

    FORMAT = "cpt-pipeline/base-eval/v1"
    KIND = "a base model's evaluation results (the base-eval.json that `cpt-tasks evaluate` keeps)"

    key: str = Field(description="sha256 of everything that determines the base model's numbers (inputs)")
    inputs: dict[str, Any] = Field(description="What the key was computed from: the base model's files, the val "
                                   "data, the ICL tasks, the settings, the code")
    base_model: ModelSource
    metrics: dict[str, MetricValue] = Field(description="metric key -> value, as the evaluation process read them")
    seconds: float = Field(description="Wall time of the base model's evaluation")
    evaluated_by: str = Field(description="The evaluation whose process computed them (its report's location)")
    created_at: str
