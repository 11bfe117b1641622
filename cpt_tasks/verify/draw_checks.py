"""A replay sweep's plan verified: every proxy run's draw fits the data converted once for the whole sweep.

Each component gets one check per swept fraction (``sweep:<fraction>``): a replay component's draw may not exceed
its converted train rows; the domain's may exceed them only by repetition, up to the epochs the plan allows
(``max_domain_epochs`` for a domain corpus the plan repeats, else once). A failing check fails its component, and
so the verification (exit 3), naming the fraction and the component.
"""

from __future__ import annotations

from typing import Protocol

from cpt_tasks.documents.convert_docs import ConvertManifest
from cpt_tasks.documents.plan_docs import Plan, PlannedSubset
from cpt_tasks.layout import TRAIN


class Checks(Protocol):
    def add(self, name: str, ok: bool, detail: str = "") -> bool: ...


def allowed_epochs(sub: PlannedSubset, plan: Plan) -> float:
    """Times a proxy run may see each converted train row of ``sub``: a repeated domain corpus up to the plan's
    max_domain_epochs, every other component once."""
    return (plan.max_domain_epochs or 1.0) if sub.role == "domain" and sub.repeat is not None else 1.0


def check_draws(plan: Plan, manifests: dict[str, ConvertManifest | None], checks: dict[str, Checks]) -> None:
    """Add each fraction's ``sweep:<fraction>`` check to every converted component of a sweep's plan (nothing for
    another plan; a component without a manifest has failed already)."""
    if plan.sweep is None:
        return
    for sub in plan.subsets:
        manifest = manifests.get(sub.name)
        if manifest is None:
            continue
        converted = manifest.splits[TRAIN].samples
        epochs = allowed_epochs(sub, plan)
        for draw in plan.sweep.draws:
            rows = draw.rows.get(sub.name, 0)
            fits = 0 <= rows <= converted * epochs
            limit = f"{converted:,} converted train rows" + (f" × at most {epochs:g} epochs" if epochs != 1 else "")
            checks[sub.name].add(f"sweep:{draw.fraction:g}", fits,
                                 f"the proxy run at replay fraction {draw.fraction:g} draws {rows:,} rows of "
                                 f"{sub.name}: {'fits' if fits else 'more than'} its {limit}")
