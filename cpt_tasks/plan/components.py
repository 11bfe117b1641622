"""A plan's components: the mix's subsets (one dataset, or each with its own source in a multi-source mix file)
and, with ``--domain``, the user's corpus beside them, each with its source, role, share and budget.

With a domain corpus, the domain gets ``(1 − replay_fraction) × total_tokens`` and the mix's components share
``replay_fraction × total_tokens`` in their proportions, in exact decimal arithmetic (``cpt_tasks.mix``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from cpt_tasks.configs.convert import ConvertConfig
from cpt_tasks.configs.plan import PlanConfig
from cpt_tasks.data.inputs import resolve_input
from cpt_tasks.data.sources import Source
from cpt_tasks.errors import UserError
from cpt_tasks.mix import Mix, domain_budget, subset_budgets


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
                                   proportion, derived, f"mix {mix.name} component {name} ({own.dataset})"))
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
        parts.append(Component(cfg.domain_name, cfg.domain, cfg.domain_subset, cfg.domain_text_field, None, "domain",
                               float(1 - Decimal(str(cfg.replay_fraction))),
                               domain_budget(cfg.total_tokens, cfg.replay_fraction, cfg.val_fraction),
                               f"--domain {cfg.domain}" + (f" --domain_subset {cfg.domain_subset}"
                                                           if cfg.domain_subset else "")))
    return parts


def resolve_part(part: Component, conv: ConvertConfig) -> Source:
    """The component's source, resolved as its conversion ``conv`` will read it (files, sizes, hashes, revision;
    its source format, timeouts and retries); UserError naming the component."""
    try:
        return resolve_input(conv.model_copy(update={"revision": part.revision}))
    except UserError as exc:
        if part.role == "replay" and part.where.startswith("--dataset"):
            raise  # today's messages for the mix's own dataset, unchanged
        raise UserError(f"{part.where}: {exc}") from exc
