"""The plan (``plan.json``): every subset's budgets, fingerprint, location and full ``ConvertConfig``, and the
entries ``cpt-tasks plan`` hands to the DAG (one per subset: what each mapped conversion gets)."""

from __future__ import annotations

import hashlib
import json

from pydantic import Field

from cpt_tasks.config import StrictModel, config_argv
from cpt_tasks.convert.config import ConvertConfig
from cpt_tasks.documents.base import Document
from cpt_tasks.errors import UserError


class PlannedMix(StrictModel):
    """The mix a plan uses."""

    name: str
    version: int
    proportions: dict[str, float] = Field(description="Subset -> share of the total (after renormalizing)")
    renormalized: bool = Field(description="Only some subsets were chosen; their proportions were rescaled")


class PlannedTokenizer(StrictModel):
    """The tokenizer every conversion of the plan uses, pinned."""

    name: str = Field(description="Hub id or folder as given")
    revision: str | None = Field(description="The hub commit every conversion uses (None for a folder)")
    sha256: str = Field(description="sha256 over the tokenizer files' hashes")


class PlannedSubset(StrictModel):
    """One subset: its share, fingerprint and the exact conversion that produces it."""

    name: str
    proportion: float = Field(description="Share of total_tokens")
    overridden: bool = Field(description="Its budget was set by --overrides, not by its proportion")
    fingerprint: str = Field(description="The conversion's fingerprint (cpt_tasks.convert.manifest)")
    source_files: int = Field(ge=0, description="Files the source holds")
    source_bytes: int = Field(ge=0, description="Their bytes")
    convert: ConvertConfig = Field(description="The conversion, every field: convert-subset runs exactly this")

    @property
    def max_tokens(self) -> int:
        return self.convert.max_tokens

    @property
    def val_tokens(self) -> int:
        return self.convert.val_tokens

    @property
    def train_rows(self) -> int:
        return self.convert.train_rows

    @property
    def val_rows(self) -> int:
        return self.convert.val_rows

    @property
    def out_root(self) -> str:
        return self.convert.out_root

    def command(self) -> list[str]:
        """The equivalent ``cpt-tasks convert`` command line (for people; the DAG runs convert-subset)."""
        return ["cpt-tasks", "convert", *config_argv(self.convert)]


FINGERPRINT_EXCLUDES = {"fingerprint", "created_at", "code_version"}


class Plan(Document):
    """``plan.json``: written by ``cpt-tasks plan``, read by convert-subset and verify."""

    FORMAT = "cpt-pipeline/plan/v2"
    KIND = "a cpt-pipeline plan"

    fingerprint: str = Field(description="sha256 of the plan's content (not its time or code version)")
    created_at: str
    code_version: str
    mix: PlannedMix
    dataset: str = Field(description="Hub id or local folder of the source")
    revision: str | None = Field(description="The dataset revision asked for")
    tokenizer: PlannedTokenizer
    total_tokens: int = Field(gt=0)
    val_fraction: float = Field(ge=0, lt=1)
    concat_tokens: int = Field(gt=0)
    seed: int
    shuffle: bool
    allow_short: bool = Field(description="A subset whose source runs out early passes verification")
    root: str = Field(description="Where the data goes (<root>/<mix>/<fingerprint>/<subset>)")
    subsets: list[PlannedSubset]

    def content_fingerprint(self) -> str:
        """The fingerprint of this plan's content (what ``fingerprint`` must equal)."""
        body = self.model_dump(mode="json", exclude=FINGERPRINT_EXCLUDES)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def subset(self, name: str, where: str = "") -> PlannedSubset:
        """The planned subset ``name``; UserError naming ``where`` (the plan's location) otherwise."""
        for sub in self.subsets:
            if sub.name == name:
                return sub
        raise UserError(f"--subset {name}: not in the plan {where} (planned: "
                        f"{', '.join(s.name for s in self.subsets)})")


class PlanEntry(Document):
    """One planned subset as the plan step hands it to the DAG (one mapped conversion each)."""

    FORMAT = "cpt-pipeline/plan-entry/v1"
    KIND = "a plan entry"

    subset: str
    plan: str | None = Field(description="Where the plan was written (None: not written)")
    plan_fingerprint: str
    fingerprint: str
    out_root: str
    max_tokens: int
    val_tokens: int
    dataset: str
