"""A replay sweep's plan (``--sweep_fractions``, the DAG ``cpt_replay_sweep``): every component converted once, at
the largest budget any swept fraction needs, and each proxy run's draw from that data.

The fractions differ only in how many rows each component gives a proxy run, so the domain is converted at the
smallest fraction (``(1 − min f) × total_tokens``), each replay component at the largest (``max f × total_tokens ×
its proportion``), and val is derived from those budgets as in any plan. A proxy run at fraction ``f`` draws, per
component, the train rows a plan at ``replay_fraction=f`` with the same total would give it (its train budget //
concat_tokens, computed by the same functions, :func:`~cpt_tasks.plan.plan_components.mix_components`); at
``f = 0`` the replay components give none (they are still converted: their val data measures forgetting). A
domain corpus that may be smaller than its budget at the smallest fraction is converted val first and repeated as in
any plan (up to ``max_domain_epochs``, counted by verify), so a draw of it may exceed its converted rows.
"""

from __future__ import annotations

from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.documents.plan_docs import PlannedSweep, SweepDraw
from cpt_tasks.errors import UserError
from cpt_tasks.mix import Mix
from cpt_tasks.plan.plan_components import (Component, at_fraction, domain_component, final_budget, mix_components,
                                            smallest_total)


def swept_fractions(cfg: PlanConfig) -> list[float]:
    """The swept fractions, ascending; UserError without --domain or without a fraction above 0."""
    if not cfg.domain:
        raise UserError("--sweep_fractions: a replay sweep measures replay beside your corpus; give --domain (the "
                        "corpus) too")
    fractions = sorted(cfg.sweep_fractions)
    if fractions[-1] == 0:
        raise UserError("--sweep_fractions: give at least one fraction above 0 (the replay components' data is "
                        "converted at the largest fraction's budget)")
    return fractions


def sweep_components(cfg: PlanConfig, mix: Mix, proportions: dict[str, float]) -> list[Component]:
    """The components a sweep converts, in plan order: the mix's at the largest fraction, the domain at the
    smallest (each one's largest budget over the fractions)."""
    fractions = swept_fractions(cfg)
    replay = [p for p in mix_components(at_fraction(cfg, fractions[-1]), mix, proportions)
              if p.name != cfg.domain_name]
    return [*replay, domain_component(at_fraction(cfg, fractions[0]))]


def sweep_draws(cfg: PlanConfig, mix: Mix, proportions: dict[str, float]) -> PlannedSweep:
    """Each fraction's draw: the train rows a plan at that replay fraction gives each component (0 for the replay
    components at 0); UserError naming the fraction and the component when one that should train on something
    would get less than one row."""
    fractions = swept_fractions(cfg)
    draws = []
    for fraction in fractions:
        at = at_fraction(cfg, fraction)
        rows = {}
        for part in mix_components(at, mix, proportions):
            if fraction == 0 and part.role == "replay":
                rows[part.name] = 0
                continue
            tokens = final_budget(at, part)[0]
            if tokens < cfg.concat_tokens:
                raise UserError(f"--sweep_fractions {fraction:g}: subset {part.name}'s train budget at this replay "
                                f"fraction, {tokens:,} tokens, is smaller than one row of {cfg.concat_tokens}; "
                                f"{_ways_out(cfg, mix, proportions, fractions, fraction)}")
            rows[part.name] = tokens // cfg.concat_tokens
        draws.append(SweepDraw(fraction=fraction, rows=rows))
    return PlannedSweep(fractions=fractions, draws=draws)


def _ways_out(cfg: PlanConfig, mix: Mix, proportions: dict[str, float], fractions: list[float],
              fraction: float) -> str:
    """The smallest total at which every swept fraction above 0 gives every component one train row, else
    what keeps it from fitting; and leaving the fraction out."""
    totals = [smallest_total(at_fraction(cfg, f).model_copy(update={"val_fraction": 0}), mix, proportions)
              for f in fractions if f > 0]
    leave = f"leave {fraction:g} out of --sweep_fractions"
    if any(t is None for t in totals):
        return f"change --overrides or lower --concat_tokens, or {leave}"
    return (f"raise --total_tokens to {max(totals):,} or more (the smallest total that gives every component one "
            f"train row at every swept fraction above 0), or {leave}")
