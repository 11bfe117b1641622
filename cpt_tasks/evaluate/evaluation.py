"""One evaluation as an object, built once by the job: what it compares (the verified data, the finished run,
both models staged, the tasks), where it works and publishes, and how it runs. Every part of the job (the eval
configs, the report, the publishing) reads what it needs from here instead of a dozen parameters."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cpt_tasks.documents.convert_docs import Framing
from cpt_tasks.documents.train_docs import ModelSource
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.configs.evaluate_config import EvaluateConfig
from cpt_tasks.evaluate.eval_inputs import FinishedTraining
from cpt_tasks.evaluate.tasks import TaskList
from cpt_tasks.layout import EVAL_TASKS_FILE


@dataclass(frozen=True)
class Staged:
    """Both models and the tokenizer as local folders, checked against the data."""

    tokenizer_dir: Path
    framing: Framing
    base_dir: Path
    base_source: ModelSource
    trained_dir: Path

    def model_dir(self, role: str) -> Path:
        """The local folder of the ``base`` or the ``trained`` model."""
        return {"base": self.base_dir, "trained": self.trained_dir}[role]


@dataclass(frozen=True)
class Evaluation:
    """Everything one evaluation is made of (see the module docstring)."""

    cfg: EvaluateConfig
    report: VerifyReport
    run: FinishedTraining
    fingerprint: str  # the evaluation's: same fingerprint, same numbers
    folder: str  # where the report is published: <run folder>/eval/<fingerprint[:16]>
    scratch: Path  # local: configs, data cache, generated tasks, the worker's result
    staged: Staged
    tasks: TaskList
    gpus: int
    precision: str

    @property
    def name(self) -> str:
        """The evaluation's run name (Composer and MLflow): ``<training run>-eval-<fingerprint[:8]>``."""
        return f"{self.run.manifest.run_name}-eval-{self.fingerprint[:8]}"

    @property
    def data_cache(self) -> Path:
        """The local stream cache of the val splits."""
        return self.scratch / "data"

    @property
    def tasks_yaml(self) -> Path | None:
        """The local ICL task list the configs name (None: no ICL tasks)."""
        return self.scratch / EVAL_TASKS_FILE if self.tasks.tasks else None
