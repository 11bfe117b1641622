"""A repeated domain corpus verified: its epochs, counted from the train rows its conversion really wrote.

A corpus the plan only estimated (a bounded sample, ``Repetition.estimated``) may be short of its budget: it was
converted val first with its whole train budget, so its val must hold exactly its planned rows while its train
may end early (the source running out is expected). Training draws its budget's rows (Streams' ``choose``), so it
sees each converted train row ``epochs = budget rows / train rows`` times; more than the plan's
``max_domain_epochs`` fails the check (exit 3), before any training, with the numbers and the ways out. The plan's
own epochs are then only its estimate. A plan made before estimates counted its corpus and converted it to fit:
its epochs must equal what the conversion gives.
"""

from __future__ import annotations

from typing import Protocol

from cpt_tasks.documents.convert_docs import ConvertManifest
from cpt_tasks.documents.plan_docs import PlannedSubset
from cpt_tasks.layout import TRAIN


class Add(Protocol):
    def __call__(self, name: str, ok: bool, detail: str = "") -> bool: ...


def may_repeat(sub: PlannedSubset) -> bool:
    """The plan only estimated this corpus: it converted val first, and its epochs are counted from its rows."""
    return sub.repeat is not None and sub.repeat.estimated


def real_epochs(sub: PlannedSubset, manifest: ConvertManifest | None) -> float:
    """Times training sees each converted train row: a corpus that may repeat, its budget's rows / the train rows
    its conversion wrote; one the plan counted, the plan's; else 1."""
    if not may_repeat(sub):
        return sub.epochs
    if manifest is None:
        return 1.0  # nothing converted: the subset has failed
    return sub.repeat.budget_rows / max(manifest.splits[TRAIN].samples, 1)


def check_epochs(sub: PlannedSubset, rows: int, limit: float, concat: int, add: Add) -> None:
    """The ``epochs`` check of a repeated ``sub`` whose conversion wrote ``rows`` train rows (``limit``: the plan's
    max_domain_epochs)."""
    repeat = sub.repeat
    epochs = repeat.budget_rows / rows if rows else float("inf")
    if not repeat.estimated:
        add("epochs", abs(epochs - repeat.epochs) < 1e-9 and epochs <= limit,
            f"{rows:,} train rows repeated {epochs:.3f} epochs give {repeat.budget_rows:,} rows (plan: "
            f"{repeat.epochs:.3f} epochs, at most {limit:g})")
        return
    ok = 0 < rows and epochs <= limit
    guess = "no estimate" if repeat.epochs is None else f"estimated {repeat.epochs:.3f}"
    detail = (f"{rows:,} train rows converted; training draws {repeat.budget_rows:,} rows ({repeat.budget_tokens:,} "
              f"tokens): {epochs:.3f} epochs (the plan's {guess}), at most max_domain_epochs {limit:g}")
    if not ok:
        detail += (f"; the corpus is too short for its budget: lower total_tokens (its budget to at most "
                   f"{int(rows * limit) * concat:,} train tokens), raise replay_fraction, give more data, or raise "
                   "max_domain_epochs, and plan again")
    add("epochs", ok, detail)
