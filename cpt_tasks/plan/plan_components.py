"""A plan's components: the mix's subsets (one dataset, or each with its own source in a multi-source mix file)
and, with ``--domain``, the user's corpus beside them, each with its source, role, share and budget.

With a domain corpus, the domain gets ``(1 − replay_fraction) × total_tokens`` and the mix's components share
``replay_fraction × total_tokens`` in their proportions, in exact decimal arithmetic (``cpt_tasks.mix``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.data.readers import resolve_input
from cpt_tasks.data.sources import Source
from cpt_tasks.errors import UserError
from cpt_tasks.mix import Mix, domain_budget, subset_budgets, val_budget
from cpt_tasks.plan.domain import DOMAIN_TEXT_OPTION


LARGEST_TOTAL = 10**18  # far beyond any corpus; budgets stay exact decimals (28 digits) well past it


@dataclass(frozen=True)
class Component:
    """One component of a plan before it is resolved: its source and what it gets."""

    name: str
    dataset: str
    subset: str | None
    text_field: str
    revision: str | None
    role: str  # replay or domain
    proportion: float  # share of total_tokens
    budget: tuple[int, int]  # derived (max_tokens, val_tokens), before --overrides
    where: str  # how errors name it: the option or the mix component it came from
    source_format: str | None = None  # its own convert --source_format (--domain_source_format), else the plan's
    text_option: str = "--text_field"  # how a missing-text-field error names the option that sets text_field


def cfg_dataset(cfg: PlanConfig, mix: Mix) -> str | None:
    """The dataset of the mix's subsets that name no source of their own."""
    return cfg.dataset or mix.dataset


def mix_components(cfg: PlanConfig, mix: Mix, proportions: dict[str, float]) -> list[Component]:
    """Every component in plan order (the mix's, then the domain); UserError for a missing dataset or a domain
    name that is also a subset's."""
    share = cfg.replay_fraction if cfg.domain else None
    budgets = subset_budgets(cfg.total_tokens, cfg.val_fraction, proportions, share)
    parts = []
    for name, derived in budgets.items():
        proportion = proportions[name] if share is None else float(Decimal(str(proportions[name])) * Decimal(str(share)))
        own = mix.sources.get(name)
        if own is not None:
            role = "replay" if cfg.domain else own.role  # beside --domain, the whole mix is the replay
            parts.append(Component(name, own.dataset, own.subset, own.text_field or cfg.text_field, None, role,
                                   proportion, derived, f"mix {mix.name} component {name} ({own.dataset})",
                                   text_option=f"the component's text_field in mix {mix.name}"
                                   + ("" if own.text_field else " (or --text_field)")))
            continue
        dataset = cfg_dataset(cfg, mix)
        if not dataset:
            raise UserError(f"--dataset: mix {mix.name} names no dataset; pass --dataset")
        parts.append(Component(name, dataset, name, cfg.text_field, cfg.revision, "replay", proportion, derived,
                               f"--dataset {dataset} subset {name}"))
    if cfg.domain:
        if cfg.domain_name in budgets:
            raise UserError(f"--domain_name {cfg.domain_name}: the mix already has a subset of that name; "
                            "choose another")
        parts.append(domain_component(cfg))
    return parts


def domain_component(cfg: PlanConfig) -> Component:
    """The ``--domain`` corpus as a component: ``(1 − replay_fraction) × total_tokens`` (a numeric replay_fraction;
    0 is allowed here: the domain gets the whole total)."""
    return Component(cfg.domain_name, cfg.domain, cfg.domain_subset, cfg.domain_text_field, None, "domain",
                     float(1 - Decimal(str(cfg.replay_fraction))),
                     domain_budget(cfg.total_tokens, cfg.replay_fraction, cfg.val_fraction),
                     f"--domain {cfg.domain}" + (f" --domain_subset {cfg.domain_subset}" if cfg.domain_subset else ""),
                     cfg.domain_source_format, DOMAIN_TEXT_OPTION)


def at_fraction(cfg: PlanConfig, fraction: float) -> PlanConfig:
    """``cfg`` with replay_fraction ``fraction`` (not validated: a replay sweep's fraction may be 0), the way a
    replay sweep and a recommended fraction budget each fraction exactly as a plan at it would."""
    return cfg.model_copy(update={"replay_fraction": fraction})


def plan_option_hint(part: Component, message: str) -> str:
    """A reader's message with its convert option ``--source_format X`` spelt as ``plan`` takes it: for the
    ``--domain`` corpus ``--domain_source_format X``, for the mix's components ``--convert_options`` (which
    every conversion of the plan shares)."""
    if part.where.startswith("--domain "):
        return re.sub(r"--source_format\b", "--domain_source_format", message)
    return re.sub(r"--source_format (\w+)", lambda m: f"--convert_options '{{\"source_format\": \"{m[1]}\"}}'",
                  message)


def resolve_part(part: Component, conv: ConvertConfig) -> Source:
    """The component's source, resolved as its conversion ``conv`` will read it (files, sizes, hashes, revision;
    its source format, timeouts and retries); UserError naming the component, whose hints name plan's options."""
    try:
        return resolve_input(conv.model_copy(update={"revision": part.revision}))
    except UserError as exc:
        message = plan_option_hint(part, str(exc))
        if part.role == "replay" and part.where.startswith("--dataset"):  # the mix's own: it names --dataset
            if message == str(exc):
                raise
            raise UserError(message) from exc
        raise UserError(f"{part.where}: {message}") from exc


def final_budget(cfg: PlanConfig, part: Component) -> tuple[int, int]:
    """(max_tokens, val_tokens) of a component: derived from its share unless ``--overrides`` sets them."""
    max_tokens, val_tokens = part.budget
    override = (cfg.overrides or {}).get(part.name)
    if override is not None:
        if override.max_tokens is not None:
            max_tokens = override.max_tokens
            val_tokens = val_budget(max_tokens, cfg.val_fraction)
        if override.val_tokens is not None:
            val_tokens = override.val_tokens
    return max_tokens, val_tokens


def smallest_total(cfg: PlanConfig, mix: Mix, proportions: dict[str, float]) -> int | None:
    """The smallest ``total_tokens`` at which every component holds one train row and (with a val_fraction) one
    val row of ``concat_tokens``, budgets derived exactly as the plan derives them; None when ``--overrides``
    keep a component too small at any total. Budgets only grow with the total, so a bisection finds it."""

    def fits(total: int) -> bool:
        at = cfg.model_copy(update={"total_tokens": total})
        return all(rows_fit(at, p) for p in mix_components(at, mix, proportions))

    high = max(cfg.total_tokens, 1)
    while not fits(high):
        if high > LARGEST_TOTAL:  # only --overrides can stay too small this long (and exact decimals end here)
            return None
        high *= 2
    low = 0  # fits(low) is False or low == 0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high


def never_fit(cfg: PlanConfig, mix: Mix, proportions: dict[str, float]) -> list[str]:
    """The components that hold less than one row at any total (their ``--overrides`` keep them too small)."""
    at = cfg.model_copy(update={"total_tokens": LARGEST_TOTAL})
    return [p.name for p in mix_components(at, mix, proportions) if not rows_fit(at, p)]


def rows_fit(cfg: PlanConfig, part: Component) -> bool:
    """Whether the component's budget holds one train row and one val row of ``concat_tokens`` (no val row
    where the plan asks for none: val_fraction 0, or ``--overrides`` setting its val_tokens to 0)."""
    max_tokens, val_tokens = final_budget(cfg, part)
    override = (cfg.overrides or {}).get(part.name)
    val_set = override is not None and override.val_tokens is not None
    wants_val = val_tokens > 0 if val_set else cfg.val_fraction > 0
    return max_tokens >= cfg.concat_tokens and (not wants_val or val_tokens >= cfg.concat_tokens)
