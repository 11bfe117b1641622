"""The plan (``plan.json``): every subset's budgets, fingerprint, location and full ``ConvertConfig``, and the
entries ``cpt-tasks plan`` hands to the DAG (one per subset: what each mapped conversion gets)."""

from __future__ import annotations

import hashlib
import json

from typing import Literal

from pydantic import Field

from cpt_tasks.configs.config_base import StrictModel, config_argv
from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.documents.document_base import Document, read_document
from cpt_tasks.errors import UserError


class PlanRef(StrictModel):
    """The plan a report (and so a run) derives from."""

    path: str = Field(description="Where the plan was read")
    sha256: str = Field(description="sha256 of the plan's bytes")
    fingerprint: str = Field(description="The plan's content fingerprint")


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


class Repetition(StrictModel):
    """A domain corpus smaller than its budget: converted once, repeated in training (Streams' ``choose``).

    ``estimated``: the plan only estimated the corpus (a bounded sample): it may be short, so it converts val first
    with its whole train budget, and ``verify`` computes the epochs from the train rows really converted (what
    training uses); ``source_tokens`` and ``epochs`` are then the plan's estimates (None: no estimate, a source
    without files). Not estimated (plans made before): the corpus was counted and converted to fit."""

    source_tokens: int | None = Field(ge=0, description="Framed tokens (BOS + text + EOS) the whole corpus holds "
                                      "(estimated: the plan's estimate; None: not estimated)")
    budget_tokens: int = Field(gt=0, description="Train tokens its share of total_tokens asks for")
    budget_rows: int = Field(gt=0, description="Rows training draws from it: budget_tokens // concat_tokens")
    epochs: float | None = Field(gt=0, description="budget_rows / its converted train rows: times each row is seen "
                                 "(estimated: the plan's estimate, informational; verify counts them)")
    estimated: bool = Field(False, description="The corpus may be short of its budget (estimated from a sample): "
                            "converted val first; verify computes the epochs from the converted rows")


def part_conversion(convert: ConvertConfig, part: int, parts: int, max_tokens: int, val_tokens: int) -> ConvertConfig:
    """Part ``part`` of ``parts`` of a subset's conversion: its number and its share of the budgets."""
    return convert.model_copy(update={"part": part, "parts": parts, "max_tokens": max_tokens, "val_tokens": val_tokens})


class PlannedPart(StrictModel):
    """One part of a subset converted in parts: its files (a contiguous slice of the listing) and its share."""

    part: int = Field(ge=0, description="Its number: <out_root>/<split>/part-NNNNN/")
    fingerprint: str = Field(description="Its conversion's fingerprint")
    max_tokens: int = Field(gt=0, description="Its share of the train budget (rows × concat_tokens)")
    val_tokens: int = Field(ge=0, description="Its share of the val budget")
    files: int = Field(gt=0, description="Input files it reads")
    bytes: int = Field(ge=0, description="Their bytes (the shares follow them)")


class PlannedSubset(StrictModel):
    """One subset (a component of the mix): its share, fingerprint and the exact conversion that produces it."""

    name: str
    proportion: float = Field(description="Share of total_tokens")
    overridden: bool = Field(description="Its budget was set by --overrides, not by its proportion")
    fingerprint: str = Field(description="The conversion's fingerprint (cpt_tasks.data.fingerprint)")
    source_files: int = Field(ge=0, description="Files the source holds")
    source_bytes: int = Field(ge=0, description="Their bytes")
    convert: ConvertConfig = Field(description="The conversion, every field: convert-subset runs exactly this")
    role: Literal["replay", "domain"] = Field("replay", description="replay: general data against forgetting; "
                                              "domain: the corpus being learned")
    repeat: Repetition | None = Field(None, description="Set when the corpus is smaller than its budget")
    parts: list[PlannedPart] | None = Field(None, description="Converted in parts (a budget beyond "
                                            "part_tokens): each its own conversion; None: in one piece")

    @property
    def part_count(self) -> int:
        """Conversions this subset takes (1: in one piece)."""
        return len(self.parts) if self.parts else 1

    def part_config(self, part: int) -> ConvertConfig:
        """The conversion of part ``part`` (of a subset in one piece: ``convert`` itself, part 0)."""
        if not self.parts:
            if part != 0:
                raise UserError(f"--part {part}: subset {self.name} is converted in one piece (part 0)")
            return self.convert
        if not 0 <= part < len(self.parts):
            raise UserError(f"--part {part}: subset {self.name} has parts 0..{len(self.parts) - 1}")
        planned = self.parts[part]
        return part_conversion(self.convert, part, len(self.parts), planned.max_tokens, planned.val_tokens)

    @property
    def epochs(self) -> float | None:
        """Times training sees each converted train row as the plan knows it: 1 unless repeated; a corpus that may
        repeat, the plan's estimate (None: no estimate; verify computes the real epochs)."""
        return self.repeat.epochs if self.repeat else 1.0

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

    def commands(self) -> list[list[str]]:
        """The equivalent ``cpt-tasks convert`` command line of each of its conversions (one per part)."""
        return [["cpt-tasks", "convert", *config_argv(self.part_config(i))] for i in range(self.part_count)]


class SweepDraw(StrictModel):
    """What one proxy run of a replay sweep trains on: the train rows each component gives it."""

    fraction: float = Field(ge=0, lt=1, description="The replay fraction of this proxy run")
    rows: dict[str, int] = Field(description="Component -> train rows this proxy run draws from it (Streams' "
                                 "choose; 0: the component is left out)")


class PlannedSweep(StrictModel):
    """A replay sweep's plan: every component converted once, at the largest budget any fraction needs; each proxy
    run draws its own budget from that data."""

    fractions: list[float] = Field(min_length=1, description="The swept replay fractions, ascending")
    draws: list[SweepDraw] = Field(description="One per fraction, in the same order")

    def draw(self, fraction: float, where: str = "") -> SweepDraw:
        """The draw of ``fraction``; UserError naming the swept fractions otherwise."""
        for draw in self.draws:
            if abs(draw.fraction - fraction) < 1e-12:
                return draw
        raise UserError(f"{where}replay fraction {fraction:g} is not one of the sweep's "
                        f"({', '.join(f'{f:g}' for f in self.fractions)})")


class SweepRef(StrictModel):
    """Where a plan's replay fraction came from: the replay sweep's recommendation it took."""

    pointer: str = Field(description="The sweep pointer read (<sweeps_root>/<corpus_key>.json)")
    report: str = Field(description="The sweep-report.json the recommendation is in")
    fraction: float = Field(ge=0, lt=1, description="The recommended replay fraction")
    sweep_run: str = Field(description="The cpt_replay_sweep run that made it")


FINGERPRINT_EXCLUDES = {"fingerprint", "created_at", "code_version", "corpus_key"}
# Fields added with the domain corpus and the replay sweep: left out of the fingerprint at their defaults, so a
# plan without them keeps the fingerprint (and so its run names and finished pointers) it had before they existed.
NEW_SUBSET_DEFAULTS = {"role": "replay", "repeat": None, "parts": None}
NEW_PLAN_DEFAULTS = {"replay_fraction": None, "max_domain_epochs": None, "sweep": None, "replay_from": None}
# ConvertConfig fields added with parts and val-first conversions: left out at their defaults too.
NEW_CONVERT_DEFAULTS = {"val_first": False, "parts": 1, "part": 0}


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
    replay_fraction: float | None = Field(None, description="With a domain corpus: the replay components' share "
                                          "of total_tokens (None: no domain)")
    max_domain_epochs: float | None = Field(None, description="The most epochs a domain component may repeat")
    corpus_key: str | None = Field(None, description="With a domain corpus: sha256 naming this corpus (its source "
                                   "files, subset and text field) with this mix and tokenizer; a replay sweep's "
                                   "recommendation is kept under it")
    sweep: PlannedSweep | None = Field(None, description="A replay sweep's plan (cpt_replay_sweep): the fractions "
                                       "and each proxy run's draw")
    replay_from: SweepRef | None = Field(None, description="replay_fraction 'recommended': the sweep it came from")

    def content_fingerprint(self) -> str:
        """The fingerprint of this plan's content (what ``fingerprint`` must equal)."""
        body = _without_defaults(self.model_dump(mode="json", exclude=FINGERPRINT_EXCLUDES), NEW_PLAN_DEFAULTS)
        body["subsets"] = [_without_defaults(s, NEW_SUBSET_DEFAULTS) for s in body["subsets"]]
        for s in body["subsets"]:
            s["convert"] = _without_defaults(s["convert"], NEW_CONVERT_DEFAULTS)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def subset(self, name: str, where: str = "") -> PlannedSubset:
        """The planned subset ``name``; UserError naming ``where`` (the plan's location) otherwise."""
        for sub in self.subsets:
            if sub.name == name:
                return sub
        raise UserError(f"--subset {name}: not in the plan {where} (planned: "
                        f"{', '.join(s.name for s in self.subsets)})")


def _without_defaults(body: dict, defaults: dict) -> dict:
    return {k: v for k, v in body.items() if not (k in defaults and v == defaults[k])}


class PlanEntry(Document):
    """One planned conversion as the plan step hands it to the DAG (one mapped convert task each): a subset, or
    one part of a subset converted in parts (its fingerprint, budgets and label are the part's)."""

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
    replay_from: str | None = Field(None, description="The replay sweep's report the plan's replay fraction came "
                                    "from (replay_fraction 'recommended'; lineage input of the plan step)")
    part: int = Field(0, ge=0, description="Which part of the subset (0 for one in one piece)")
    parts: int = Field(1, ge=1, description="The subset's parts")

    @property
    def label(self) -> str:
        """How the UI names the task: the subset, or ``<subset>/<part>`` when it is converted in parts."""
        return self.subset if self.parts == 1 else f"{self.subset}/{self.part}"


def load_plan(location: str) -> tuple[Plan, str]:
    """The plan at ``location`` and its sha256; UserError when missing or not a valid plan."""
    found, sha256 = read_document(location, Plan, "--plan")
    if found.fingerprint != found.content_fingerprint():
        raise UserError(f"--plan {location}: its content does not match its fingerprint (edited by hand?); "
                        "plan again")
    return found, sha256
