"""The replay sweep's documents: ``sweep-report.json`` (every proxy run's measured point, the fitted forgetting
curve, the recommended replay fraction and why), which ``cpt_dolmino`` reads back when ``replay_fraction`` is
``"recommended"``. Light core: pydantic only; the numbers are computed in :mod:`cpt_tasks.sweep`."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from cpt_tasks.configs.config_base import StrictModel
from cpt_tasks.documents.document_base import Document
from cpt_tasks.documents.evaluate_docs import CptChange
from cpt_tasks.documents.train_docs import MlflowRun

FitForm = Literal["exponential", "piecewise-linear"]
RecommendationStatus = Literal["recommended", "none_within_tolerance", "too_noisy", "not_monotone"]


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


class SubsetLoss(StrictModel):
    """One subset's held-out loss, the proxy's starting point vs the proxy run, and its relative change."""

    name: str
    base: float = Field(description="Held-out loss (LanguageCrossEntropy, nats) of the proxy's starting point")
    trained: float = Field(description="Held-out loss (nats) after the proxy run")
    relative_change: float = Field(description="(trained - base) / base: positive is a rise (worse)")

    @model_validator(mode="after")
    def _the_change_of_its_losses(self) -> SubsetLoss:
        if not self.base > 0:
            raise ValueError(f"{self.name}: base loss {self.base} is not positive")
        if not _same(self.relative_change, (self.trained - self.base) / self.base):
            raise ValueError(f"{self.name}: relative_change {self.relative_change} is not (trained - base) / base")
        return self


class SweepPoint(StrictModel):
    """One proxy run of the sweep: its replay fraction and what it gained and forgot, with the numbers behind them."""

    fraction: float = Field(ge=0.0, le=1.0, description="The proxy run's replay fraction")
    domain_gain: float = Field(description="Relative fall of the domain's held-out loss, (base - trained) / base "
                               "(positive: gained)")
    forgetting: float = Field(description="Mean over the replay subsets of the relative rise of held-out loss, "
                              "(trained - base) / base (positive: forgotten)")
    domain: SubsetLoss = Field(description="The domain component's held-out loss the gain comes from")
    replay: list[SubsetLoss] = Field(min_length=1, description="The replay subsets' held-out losses the "
                                     "forgetting averages")
    eval_report: str = Field(description="Location of the eval-report.json the point was read from")
    icl: list[CptChange] = Field(default_factory=list, description="The evaluation's ICL tasks on the replay's "
                                 "data or general ability (its cpt.forgetting tasks), base vs trained: forgetting "
                                 "the report shows beside the fit, which is of the held-out loss")

    @property
    def icl_worse(self) -> int:
        """ICL tasks the proxy run made worse than its starting point."""
        return sum(change.verdict == "worse" for change in self.icl)

    @model_validator(mode="after")
    def _the_numbers_of_its_subsets(self) -> SweepPoint:
        if not _same(self.domain_gain, -self.domain.relative_change):
            raise ValueError(f"domain_gain {self.domain_gain} is not the domain's fall of loss "
                             f"{-self.domain.relative_change}")
        mean = sum(s.relative_change for s in self.replay) / len(self.replay)
        if not _same(self.forgetting, mean):
            raise ValueError(f"forgetting {self.forgetting} is not the replay subsets' mean rise of loss {mean}")
        return self


class SweepFit(StrictModel):
    """Forgetting as a function of the replay fraction, fitted through the points (monotone non-increasing)."""

    form: FitForm = Field(description="exponential: c + k·exp(-t·(f - f0)) (Data Mixing Laws); piecewise-linear: "
                          "the isotonic (non-increasing) fit through the points, joined by straight lines")
    parameters: dict[str, float] = Field(description="exponential: c, k, t, f0; piecewise-linear: none (see knots)")
    knots: list[tuple[float, float]] = Field(description="(fraction, fitted forgetting) at each swept fraction, "
                                             "in increasing fraction; the piecewise-linear curve joins them")
    predicted: list[float] = Field(description="The fit's forgetting at each point, in the report's point order")
    r2: float | None = Field(description="R² of the chosen form over the points (None: forgetting does not vary)")
    rmse: float = Field(description="Root mean square residual of the chosen form")
    exponential_r2: float | None = Field(description="R² of the exponential form, also when it was not chosen "
                                         "(None: not tried, fewer than 3 distinct fractions)")
    monotone: bool = Field(description="The measured forgetting itself never rises with more replay")
    why: str = Field(description="Why this form, in words")


class SweepRecommendation(StrictModel):
    """The replay fraction to train with, or why the sweep cannot say."""

    fraction: float | None = Field(description="The recommended replay fraction (None: no recommendation)")
    status: RecommendationStatus
    tolerance: float = Field(description="The forgetting tolerance it was chosen against")
    predicted_forgetting: float | None = Field(description="The fit's forgetting at the recommended fraction")
    expected_gain: float | None = Field(description="Domain gain at the recommended fraction, interpolated "
                                        "between the measured points")
    gain_non_increasing: bool = Field(description="Measured domain gain never rises with more replay (as expected)")
    reason: str = Field(description="Why, in plain language")


class SweepReport(Document):
    """``sweep-report.json``: the replay sweep's points, fit and recommendation (written last: its completion
    marker)."""

    FORMAT = "cpt-pipeline/sweep-report/v1"
    KIND = "a replay sweep report (the sweep-report.json the replay sweep writes)"

    points: list[SweepPoint] = Field(description="One per proxy run, in increasing replay fraction")
    fit: SweepFit
    recommendation: SweepRecommendation
    tolerance: float = Field(description="Forgetting tolerance: the largest accepted relative rise of the mean "
                             "replay held-out loss")
    tolerance_meaning: str = Field(description="What the tolerance means, in words")
    domain: str = Field(description="The domain component whose gain is measured")
    proxy_model: str | None = Field(None, description="The proxy model the sweep trained from")
    proxy_tokens: int | None = Field(None, description="Tokens each proxy run trained on")
    corpus_fingerprint: str | None = Field(None, description="Fingerprint of the domain corpus (matches a plan)")
    mix: str | None = Field(None, description="The replay mix swept")
    tokenizer: str | None = Field(None, description="The tokenizer (the big run must use the same one)")


class SweepPointer(Document):
    """``<sweeps_root>/<corpus_key>.json``: the newest replay sweep of a corpus with a mix and a tokenizer, written
    by the sweep's recommend step after its report; what ``replay_fraction: "recommended"`` reads."""

    FORMAT = "cpt-pipeline/sweep-pointer/v1"
    KIND = "a replay sweep pointer"

    corpus_key: str = Field(description="The plans' corpus_key: this corpus with this mix and tokenizer")
    status: RecommendationStatus
    fraction: float | None = Field(description="The recommended replay fraction (None: the sweep recommends none)")
    reason: str = Field(description="Why, in plain words (the report's recommendation)")
    report: str = Field(description="The sweep-report.json")
    sweep_run: str = Field(description="The cpt_replay_sweep run that made it")
    mix: str
    tokenizer: str
    created_at: str


class SweepResult(Document):
    """The result of ``cpt-tasks recommend`` (the DAG's XCom): where the report is and what it recommends."""

    FORMAT = "cpt-pipeline/sweep-result/v1"
    KIND = "a replay sweep result"

    status: RecommendationStatus
    fraction: float | None = Field(description="The recommended replay fraction (None: none)")
    reason: str
    report: str
    report_md: str
    report_png: str
    pointer: str | None = Field(description="The corpus's sweep pointer written (None: no --sweeps_root)")
    plan_fingerprint: str
    corpus_key: str | None
    run_folders: list[str] = Field(description="The proxy runs' folders, one per fraction (lineage inputs)")
    mlflow: MlflowRun = Field(description="The sweep's parent MLflow run (the proxy runs are nested under it)")
