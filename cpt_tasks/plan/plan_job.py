"""``plan(cfg) -> Plan``: derive every subset's budgets, full ``ConvertConfig``, fingerprint and location.

The fingerprint of each subset is the converter's own (``cpt_tasks.data.fingerprint.fingerprint``) over the
exact ``ConvertConfig`` the plan carries, so the same inputs always give the same location, a converted
location is recognised as already complete, and ``verify`` can demand that each manifest carries it.
``convert-subset`` runs that config as it is stored (validated by the model when the plan is read).
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from decimal import ROUND_CEILING, Decimal

from pydantic import ValidationError

from cpt_tasks import __version__
from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.data.fingerprint import fingerprint
from cpt_tasks.data.sources import Source
from cpt_tasks.documents import dump_document, write_document
from cpt_tasks.documents.plan_docs import Plan, PlanEntry, PlannedMix, PlannedSubset, PlannedTokenizer, SweepRef
from cpt_tasks.errors import UserError
from cpt_tasks.jobs import Outcome
from cpt_tasks.layout import subset_root
from cpt_tasks.mix import Mix, check_proportions, load_mix
from cpt_tasks.plan.corpus_identity import corpus_key
from cpt_tasks.plan.corpus_estimate import estimate_corpus
from cpt_tasks.plan.domain import plan_domain
from cpt_tasks.plan.plan_components import (Component, at_fraction, cfg_dataset, domain_component, final_budget,
                                            mix_components, never_fit, resolve_part, smallest_total)
from cpt_tasks.plan.plan_parts import in_parts
from cpt_tasks.plan.plan_table import format_plan
from cpt_tasks.plan.recommended_fraction import check_recommended_options, read_recommendation
from cpt_tasks.plan.sweep_budgets import sweep_components, sweep_draws
from cpt_tasks.tokenizer import Encoder, TokenizerInfo, describe, hub_commit, resolve_tokenizer_dir


SHORTEST_USEFUL_ROW = 128  # rows shorter than this train nothing useful: not offered as a way out


def effective_mix(cfg: PlanConfig) -> tuple[Mix, dict[str, float], bool]:
    """The mix, the proportions this plan uses (replaced, restricted and renormalized as asked) and whether they
    were renormalized: only when ``subsets`` drops some of them; naming every subset changes nothing, so the
    default plan gives the reference table's budgets exactly (its proportions sum to 1.0001)."""
    mix = load_mix(cfg.mix)
    proportions = dict(mix.proportions)
    if cfg.proportions is not None:
        check_proportions(cfg.proportions, "--proportions")
        proportions = dict(cfg.proportions)
    if cfg.subsets is not None:
        unknown = [s for s in cfg.subsets if s not in proportions]
        if unknown:
            raise UserError(f"--subsets: unknown subset(s) {', '.join(unknown)}; the mix has "
                            f"{', '.join(proportions)}")
        renormalized = set(cfg.subsets) != set(proportions)
        kept = sum(proportions[s] for s in cfg.subsets) if renormalized else 1
        proportions = {s: proportions[s] / kept for s in cfg.subsets}
    else:
        renormalized = False
    unknown = sorted(set(cfg.overrides or {}) - set(proportions) - ({cfg.domain_name} if cfg.domain else set()))
    if unknown:
        raise UserError(f"--overrides: unknown subset(s) {', '.join(unknown)}")
    return mix, proportions, renormalized


def check_budgets(cfg: PlanConfig, mix: Mix, proportions: dict[str, float],
                  parts: list[Component]) -> dict[str, tuple[int, int]]:
    """Every component's (max_tokens, val_tokens), overrides applied; UserError naming the first (the domain
    first) whose train or val budget holds less than one row, and the ways out: the smallest --total_tokens that
    fits every component, then the options that fit this total."""
    budgets = {p.name: final_budget(cfg, p) for p in parts}
    for part in sorted(parts, key=lambda p: p.role != "domain"):
        max_tokens, val_tokens = budgets[part.name]
        if max_tokens < cfg.concat_tokens:
            split, tokens = "train", max_tokens
        elif 0 < val_tokens < cfg.concat_tokens:
            split, tokens = "val", val_tokens
        else:
            continue
        raise UserError(f"subset {part.name}: {split} budget {tokens:,} tokens is smaller than one row of "
                        f"{cfg.concat_tokens}; {ways_out(cfg, mix, proportions, parts, part, split, budgets)}")
    return budgets


def ways_out(cfg: PlanConfig, mix: Mix, proportions: dict[str, float], parts: list[Component], part: Component,
             split: str, budgets: dict[str, tuple[int, int]]) -> str:
    """What makes a plan whose ``part`` holds less than one ``split`` row fit: more tokens first (the smallest
    total that fits every component), then what fits at this total: a larger val_fraction or share, or shorter
    rows (the longest that fit, with the val asked for or without val)."""
    override = (cfg.overrides or {}).get(part.name)
    if getattr(override, "max_tokens" if split == "train" else "val_tokens", None) is not None:
        return f"set its {split} budget in --overrides to at least {cfg.concat_tokens}, or lower --concat_tokens"
    total = smallest_total(cfg, mix, proportions)
    if total is None:
        return (f"no --total_tokens fits while --overrides keep {', '.join(never_fit(cfg, mix, proportions))} "
                f"under one row of {cfg.concat_tokens}: change those, or lower --concat_tokens")
    rows = "one train row" + (" and one val row" if cfg.val_fraction else "")
    ways = [f"raise --total_tokens to {total:,} or more (the smallest total that gives every component {rows} of "
            f"{cfg.concat_tokens})"]
    trains_fit = all(m >= cfg.concat_tokens for m, _ in budgets.values())
    if split == "val" and trains_fit:
        fraction = val_fraction_that_fits(cfg, parts, budgets)
        ways.append(f"raise --val_fraction to {fraction} or more (0: no val)" if fraction
                    else "set --val_fraction 0 (no val)")
    elif split == "train":
        ways.append("lower --replay_fraction" if part.role == "domain" and cfg.domain
                    else "raise --replay_fraction or its proportion" if cfg.domain else "raise its proportion")
    longest = min(m for m, _ in budgets.values())
    with_val = min([longest] + [v for _, v in budgets.values() if v > 0])
    if SHORTEST_USEFUL_ROW <= with_val < cfg.concat_tokens:  # only ever a lower value than today's
        ways.append(f"lower --concat_tokens to {with_val:,} or less")
    elif cfg.val_fraction and SHORTEST_USEFUL_ROW <= longest < cfg.concat_tokens:
        ways.append(f"lower --concat_tokens to {longest:,} or less with --val_fraction 0 (no val)")
    return ", or ".join(ways)


def val_fraction_that_fits(cfg: PlanConfig, parts: list[Component],
                           budgets: dict[str, tuple[int, int]]) -> str | None:
    """The val_fraction (rounded up to two significant digits) that gives every component whose val is derived
    one val row at this total; None when that would be 1 or more."""
    derived = [budgets[p.name][0] for p in parts
               if getattr((cfg.overrides or {}).get(p.name), "val_tokens", None) is None]
    if not derived:
        return None
    exact = Decimal(cfg.concat_tokens) / Decimal(min(derived))
    step = Decimal(1).scaleb(exact.adjusted() - 1)
    fraction = (exact / step).to_integral_value(ROUND_CEILING) * step
    return f"{fraction.normalize():f}" if fraction < 1 else None


def planned_conversion(cfg: PlanConfig, part: Component, budget: tuple[int, int],
                       tokenizer_revision: str | None) -> ConvertConfig:
    """The component's ConvertConfig before its location is known (out_root "-"); UserError naming a bad
    --convert_options value. The component's own source format (--domain_source_format) wins over theirs."""
    values = dict(dataset=part.dataset, data_subset=part.subset, text_field=part.text_field, out_root="-",
                  tokenizer=cfg.tokenizer, tokenizer_revision=tokenizer_revision, concat_tokens=cfg.concat_tokens, max_tokens=budget[0],
                  val_tokens=budget[1], shuffle=cfg.shuffle, seed=cfg.seed, num_workers=cfg.num_workers)
    options = dict(cfg.convert_options or {})
    if part.source_format is not None:
        options["source_format"] = part.source_format
    try:
        return ConvertConfig(**values, **options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"--convert_options: {problems}") from None


class _Pinned:
    """The plan's tokenizer, pinned (every conversion and the verification use exactly these files) and loaded once
    with the conversions' own framing tokens (--convert_options may change them); each component's source,
    resolved once (a recommended replay fraction resolves the domain before its budget is known)."""

    def __init__(self, cfg: PlanConfig) -> None:
        self.folder = resolve_tokenizer_dir(cfg.tokenizer, cfg.tokenizer_revision)
        self.commit = hub_commit(self.folder)
        self.encoder: Encoder | None = None
        self.tok: TokenizerInfo | None = None
        self.sources: dict[str, Source] = {}

    def conversion(self, cfg: PlanConfig, part: Component, budget: tuple[int, int]) -> ConvertConfig:
        conv = planned_conversion(cfg, part, budget, self.commit)
        if self.tok is None:
            self.encoder = Encoder(self.folder, conv.bos_text, conv.eos_text, conv.tokenizer_backend)
            self.tok = describe(cfg.tokenizer, self.folder, self.encoder)
        return conv

    def source(self, part: Component, conv: ConvertConfig) -> Source:
        """Read as the conversion will: its source format, timeouts and retries (--convert_options may set them)."""
        if part.name not in self.sources:
            self.sources[part.name] = resolve_part(part, conv)
        return self.sources[part.name]

    def corpus_key(self, cfg: PlanConfig, source: Source, mix: Mix, proportions: dict[str, float]) -> str:
        return corpus_key(source, cfg.domain_subset, cfg.domain_text_field, mix.name, mix.version, proportions,
                          self.tok.sha256)


def recommended(cfg: PlanConfig, pinned: _Pinned, mix: Mix, proportions: dict[str, float]) -> SweepRef:
    """replay_fraction 'recommended': the domain resolved first, its corpus key, and the sweep's recommendation."""
    part = domain_component(at_fraction(cfg, 0))
    source = pinned.source(part, pinned.conversion(cfg, part, part.budget))
    return read_recommendation(cfg, pinned.corpus_key(cfg, source, mix, proportions), mix.name, cfg.tokenizer)


def plan_parts(cfg: PlanConfig, mix: Mix, proportions: dict[str, float]) -> list[Component]:
    """The components converted: a replay sweep's at their largest budgets; with replay fraction 0 (a sweep may
    recommend no replay) the domain alone, the mix's subsets left out; else the mix's and the domain."""
    if cfg.sweep_fractions is not None:
        return sweep_components(cfg, mix, proportions)
    parts = mix_components(cfg, mix, proportions)
    return [p for p in parts if p.role == "domain"] if cfg.domain and cfg.replay_fraction == 0 else parts


def plan(cfg: PlanConfig) -> Plan:
    """The plan; UserError for an impossible one (a bad domain corpus: before anything is converted). With
    --sweep_fractions a replay sweep's (replay_fraction is then ignored); with replay_fraction 'recommended'
    the newest replay sweep's fraction for this corpus, mix and tokenizer."""
    mix, proportions, renormalized = effective_mix(cfg)
    pinned, replay_from = None, None
    if cfg.sweep_fractions is None and cfg.replay_fraction == "recommended":
        check_recommended_options(cfg)
        pinned = _Pinned(cfg)
        replay_from = recommended(cfg, pinned, mix, proportions)
        cfg = at_fraction(cfg, replay_from.fraction)
    sweep = sweep_draws(cfg, mix, proportions) if cfg.sweep_fractions is not None else None
    parts = plan_parts(cfg, mix, proportions)
    budgets = check_budgets(at_fraction(cfg, sweep.fractions[-1]) if sweep else cfg, mix, proportions, parts)
    pinned = pinned or _Pinned(cfg)
    key = None
    drafts = []
    for part in sorted(parts, key=lambda p: p.role != "domain"):  # the user's corpus is checked first
        budget = budgets[part.name]
        conv = pinned.conversion(cfg, part, budget)
        source = pinned.source(part, conv)
        repeat = None
        if part.role == "domain" and cfg.domain:
            key = pinned.corpus_key(cfg, source, mix, proportions)
        if part.role == "domain" and part.name not in (cfg.overrides or {}):
            estimate = estimate_corpus(source, conv.text_field, pinned.encoder, part.where, part.text_option)
            repeat = plan_domain(estimate, budget, cfg.concat_tokens, cfg.max_domain_epochs, part.where)
            if repeat is not None:  # it may be short: val first, then up to its whole train budget
                conv = conv.model_copy(update={"val_first": True})
        conv = conv.model_copy(update={"revision": source.revision})
        fp, conv, pieces = in_parts(conv, source, pinned.tok, cfg.part_tokens)
        conv = conv.model_copy(update={"out_root": subset_root(cfg.out_root, mix.name, fp, part.name)})
        drafts.append(PlannedSubset(name=part.name, proportion=part.proportion,
                                    overridden=part.name in (cfg.overrides or {}), fingerprint=fp,
                                    source_files=len(source.files), source_bytes=source.total_bytes, convert=conv,
                                    role=part.role, repeat=repeat, parts=pieces))
    order = [p.name for p in parts]
    subsets = sorted(drafts, key=lambda s: order.index(s.name))
    body = Plan(
        fingerprint="-", created_at=datetime.now(timezone.utc).isoformat(), code_version=__version__,
        mix=PlannedMix(name=mix.name, version=mix.version, proportions=proportions,
                       renormalized=renormalized),
        dataset=cfg_dataset(cfg, mix) or "+".join(dict.fromkeys(p.dataset for p in parts)), revision=cfg.revision,
        tokenizer=PlannedTokenizer(name=pinned.tok.name, revision=pinned.commit, sha256=pinned.tok.sha256),
        total_tokens=cfg.total_tokens, val_fraction=cfg.val_fraction, concat_tokens=cfg.concat_tokens,
        seed=cfg.seed, shuffle=cfg.shuffle, allow_short=cfg.allow_short, root=cfg.out_root, subsets=subsets,
        replay_fraction=cfg.replay_fraction if cfg.domain and sweep is None else None,
        max_domain_epochs=cfg.max_domain_epochs if any(p.role == "domain" for p in parts) else None,
        corpus_key=key, sweep=sweep, replay_from=replay_from)
    body.fingerprint = body.content_fingerprint()
    return body


def plan_entries(body: Plan, location: str | None) -> list[PlanEntry]:
    """One entry per planned conversion, a subset or each part of one (what the DAG maps its convert tasks over):
    name, part, budgets, location."""
    swept = body.replay_from.report if body.replay_from else None
    entries = []
    for s in body.subsets:
        for part in range(s.part_count):
            conv = s.part_config(part)
            entries.append(PlanEntry(subset=s.name, plan=location, plan_fingerprint=body.fingerprint,
                                     fingerprint=s.parts[part].fingerprint if s.parts else s.fingerprint,
                                     out_root=s.out_root, max_tokens=conv.max_tokens, val_tokens=conv.val_tokens,
                                     dataset=conv.dataset, replay_from=swept, part=part, parts=s.part_count))
    return entries


def command(cfg: PlanConfig) -> Outcome:
    """``cpt-tasks plan``: the plan (to --output too), its table on stderr, the plan JSON on stdout; the result is
    one entry per subset (what the DAG maps its conversions over)."""
    body = plan(cfg)
    if cfg.output:
        write_document(cfg.output, body)
    print(format_plan(body), file=sys.stderr)
    print(dump_document(body).decode())
    return Outcome(plan_entries(body, cfg.output))
