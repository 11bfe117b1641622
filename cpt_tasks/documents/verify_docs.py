"""Verification's documents: ``verify-report.json`` (what training reads) and the result ``cpt-tasks verify``
hands to the DAG."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cpt_tasks.configs.config_base import StrictModel
from cpt_tasks.documents.document_base import Document
from cpt_tasks.documents.plan_docs import PlannedSweep, PlannedTokenizer, PlanRef
from cpt_tasks.documents.train_docs import FinishedRun
from cpt_tasks.layout import Split


class Check(StrictModel):
    """One check of one subset."""

    check: str = Field(description="What was checked, e.g. shards:train, budget:val, mix")
    ok: bool
    detail: str = ""


class SubsetReport(StrictModel):
    """One subset's verdict, counts and checks."""

    name: str
    status: Literal["ok", "short", "failed"]
    fingerprint: str
    out_root: str
    manifest: str = Field(description="Location of its conversion manifest")
    proportion: float
    planned_train_tokens: int = Field(description="Train tokens its conversion was planned to write (unique)")
    train_tokens: int = Field(description="Train tokens its conversion wrote (unique: each row once)")
    val_tokens: int
    share: float = Field(description="Its share of the tokens training draws (trained tokens: a repeated "
                         "component counts train_tokens × epochs); compare with proportion")
    documents: dict[Split, int] | None = Field(description="Documents per split (None: no manifest)")
    exhausted: bool = Field(description="Its source ran out before the budget")
    checks: list[Check]
    role: Literal["replay", "domain"] = Field("replay", description="replay: general data; domain: the corpus "
                                              "being learned")
    epochs: float = Field(1.0, description="Times training sees each of its train rows (a repeated domain corpus)")
    trained_tokens: int | None = Field(None, description="Train tokens training draws from it: train_tokens × "
                                       "epochs (None: train_tokens)")
    planned_trained_tokens: int | None = Field(None, description="Train tokens the plan has training draw from "
                                               "it: its budget's rows × concat_tokens (None: planned_train_tokens)")

    @property
    def trained(self) -> int:
        """Train tokens training draws from it (its unique train tokens × epochs)."""
        return self.train_tokens if self.trained_tokens is None else self.trained_tokens

    @property
    def planned_trained(self) -> int:
        """Train tokens the plan has training draw from it."""
        return self.planned_train_tokens if self.planned_trained_tokens is None else self.planned_trained_tokens


class VerifyReport(Document):
    """``verify-report.json``: training reads only a passed one."""

    FORMAT = "cpt-pipeline/verify-report/v1"
    KIND = "a verification report (the verify-report.json that `cpt-tasks verify` writes)"

    ok: bool
    plan: PlanRef
    mix: str
    concat_tokens: int
    tokenizer: PlannedTokenizer
    total_tokens: int
    realized_train_tokens: int = Field(description="Train tokens the conversions wrote (unique: each row once)")
    subsets: list[SubsetReport]
    trained_tokens: int | None = Field(None, description="Train tokens of one pass over the mix with repeated "
                                       "components repeated (None: realized_train_tokens)")
    created_at: str
    code_version: str
    sweep: PlannedSweep | None = Field(None, description="A replay sweep's plan: each proxy run's draw, checked to "
                                       "fit the converted rows")
    finished_training: FinishedRun | None = Field(None, description="Always null in new reports (the step's "
                                                  "result carries it: VerifySummary); set in older ones, which "
                                                  "still read")


class SubsetSummary(StrictModel):
    """A subset's line in the verify step's result."""

    status: Literal["ok", "short", "failed"]
    fingerprint: str
    out_root: str
    manifest: str
    train_tokens: int
    val_tokens: int
    proportion: float
    role: Literal["replay", "domain"] = "replay"
    epochs: float = 1.0


class VerifySummary(Document):
    """The result of ``cpt-tasks verify`` (the DAG's XCom): verdict, report location, each subset's counts."""

    FORMAT = "cpt-pipeline/verify-result/v1"
    KIND = "a verification result"

    ok: bool
    report: str
    report_md: str
    plan: str
    plan_fingerprint: str
    realized_train_tokens: int
    finished_training: FinishedRun | None
    subsets: dict[str, SubsetSummary]
