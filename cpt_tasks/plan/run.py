"""``plan(cfg) -> Plan``: derive every subset's budgets, full ``ConvertConfig``, fingerprint and location.

The fingerprint of each subset is the converter's own (``cpt_tasks.data.fingerprint.fingerprint``) over the
exact ``ConvertConfig`` the plan carries, so the same inputs always give the same location, a converted
location is recognised as already complete, and ``verify`` can demand that each manifest carries it.
``convert-subset`` runs that config as it is stored (validated by the model when the plan is read).
"""

from __future__ import annotations

import shlex
from datetime import datetime, timezone

from pydantic import ValidationError

from cpt_tasks import __version__
from cpt_tasks.configs.convert import ConvertConfig
from cpt_tasks.configs.plan import PlanConfig
from cpt_tasks.data.fingerprint import fingerprint
from cpt_tasks.documents.plan import Plan, PlanEntry, PlannedMix, PlannedSubset, PlannedTokenizer, load_plan
from cpt_tasks.errors import UserError
from cpt_tasks.layout import subset_root
from cpt_tasks.mix import Mix, check_proportions, load_mix, val_budget
from cpt_tasks.plan.components import Component, cfg_dataset, mix_components, resolve_part
from cpt_tasks.plan.domain import count_corpus, fits, plan_repetition
from cpt_tasks.tokenizer import Encoder, TokenizerInfo, describe, hub_commit, resolve_tokenizer_dir


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


def subset_budget(cfg: PlanConfig, name: str, derived: tuple[int, int]) -> tuple[int, int]:
    """(max_tokens, val_tokens) of a subset: derived from its proportion unless overridden; UserError when a
    budget holds less than one row."""
    max_tokens, val_tokens = derived
    override = (cfg.overrides or {}).get(name)
    if override is not None:
        if override.max_tokens is not None:
            max_tokens = override.max_tokens
            val_tokens = val_budget(max_tokens, cfg.val_fraction)
        if override.val_tokens is not None:
            val_tokens = override.val_tokens
    if max_tokens < cfg.concat_tokens:
        raise UserError(f"subset {name}: train budget {max_tokens:,} tokens is smaller than one row of "
                        f"{cfg.concat_tokens}; raise --total_tokens or its proportion")
    if 0 < val_tokens < cfg.concat_tokens:
        raise UserError(f"subset {name}: val budget {val_tokens:,} tokens is smaller than one row of "
                        f"{cfg.concat_tokens}; raise --val_fraction, or set it to 0 for no val")
    return max_tokens, val_tokens


def planned_conversion(cfg: PlanConfig, part: Component, budget: tuple[int, int],
                       tokenizer_revision: str | None) -> ConvertConfig:
    """The component's ConvertConfig before its location is known (out_root "-"); UserError naming a bad
    --convert_options value."""
    values = dict(dataset=part.dataset, data_subset=part.subset, text_field=part.text_field, out_root="-",
                  tokenizer=cfg.tokenizer, tokenizer_revision=tokenizer_revision, concat_tokens=cfg.concat_tokens, max_tokens=budget[0],
                  val_tokens=budget[1], shuffle=cfg.shuffle, seed=cfg.seed, num_workers=cfg.num_workers)
    try:
        return ConvertConfig(**values, **(cfg.convert_options or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"--convert_options: {problems}") from None


def plan(cfg: PlanConfig) -> Plan:
    """The plan; UserError for an impossible one (a bad domain corpus: before anything is converted)."""
    mix, proportions, renormalized = effective_mix(cfg)
    parts = mix_components(cfg, mix, proportions)
    folder = resolve_tokenizer_dir(cfg.tokenizer, cfg.tokenizer_revision)
    tokenizer_commit = hub_commit(folder)  # every conversion and the verification use exactly these files
    tok: TokenizerInfo | None = None
    encoder: Encoder | None = None
    drafts = []
    for part in sorted(parts, key=lambda p: p.role != "domain"):  # the user's corpus is checked first
        budget = subset_budget(cfg, part.name, part.budget)
        conv = planned_conversion(cfg, part, budget, tokenizer_commit)
        if tok is None:  # the framing tokens are the conversions' own (--convert_options may change them)
            encoder = Encoder(folder, conv.bos_text, conv.eos_text, conv.tokenizer_backend)
            tok = describe(cfg.tokenizer, folder, encoder)
        # read as the conversion will: its source format, timeouts and retries (--convert_options may set them)
        source = resolve_part(part, conv)
        repeat = None
        if part.role == "domain" and part.name not in (cfg.overrides or {}):
            count = count_corpus(source, conv, encoder, fits(*budget, cfg.concat_tokens) + 1, part.where)
            max_tokens, repeat = plan_repetition(count, budget, cfg.concat_tokens, cfg.max_domain_epochs, part.where)
            conv = conv.model_copy(update={"max_tokens": max_tokens})
        conv = conv.model_copy(update={"revision": source.revision})
        fp = fingerprint(conv, source, tok)
        conv = conv.model_copy(update={"out_root": subset_root(cfg.out_root, mix.name, fp, part.name)})
        drafts.append(PlannedSubset(name=part.name, proportion=part.proportion,
                                    overridden=part.name in (cfg.overrides or {}), fingerprint=fp,
                                    source_files=len(source.files), source_bytes=source.total_bytes, convert=conv,
                                    role=part.role, repeat=repeat))
    order = [p.name for p in parts]
    subsets = sorted(drafts, key=lambda s: order.index(s.name))
    body = Plan(
        fingerprint="-", created_at=datetime.now(timezone.utc).isoformat(), code_version=__version__,
        mix=PlannedMix(name=mix.name, version=mix.version, proportions=proportions,
                       renormalized=renormalized),
        dataset=cfg_dataset(cfg, mix) or "+".join(dict.fromkeys(p.dataset for p in parts)), revision=cfg.revision,
        tokenizer=PlannedTokenizer(name=tok.name, revision=tokenizer_commit, sha256=tok.sha256),
        total_tokens=cfg.total_tokens, val_fraction=cfg.val_fraction, concat_tokens=cfg.concat_tokens,
        seed=cfg.seed, shuffle=cfg.shuffle, allow_short=cfg.allow_short, root=cfg.out_root, subsets=subsets,
        replay_fraction=cfg.replay_fraction if cfg.domain else None,
        max_domain_epochs=cfg.max_domain_epochs if any(p.role == "domain" for p in parts) else None)
    body.fingerprint = body.content_fingerprint()
    return body


def planned_subset(location: str, subset: str, num_workers: int | None = None) -> ConvertConfig:
    """The ConvertConfig of one subset of the plan at ``location`` (UserError naming an unplanned subset)."""
    cfg = load_plan(location)[0].subset(subset, location).convert
    return cfg if num_workers is None else cfg.model_copy(update={"num_workers": num_workers})


def plan_entries(body: Plan, location: str | None) -> list[PlanEntry]:
    """One entry per planned subset (what the DAG maps its conversions over): name, budgets, location."""
    return [PlanEntry(subset=s.name, plan=location, plan_fingerprint=body.fingerprint, fingerprint=s.fingerprint,
                      out_root=s.out_root, max_tokens=s.max_tokens, val_tokens=s.val_tokens, dataset=s.convert.dataset)
            for s in body.subsets]


def format_plan(body: Plan) -> str:
    """A readable table of the plan, and the equivalent convert command of each subset."""
    lines = [f"plan {body.fingerprint[:12]}: {body.total_tokens:,} train tokens, mix {body.mix.name}, "
             f"concat {body.concat_tokens}",
             f"{'subset':<14}{'proportion':>11}{'max_tokens':>17}{'val_tokens':>13}{'epochs':>8}  out_root"]
    if body.mix.renormalized:
        lines.insert(1, f"(subsets left out of mix {body.mix.name}: the kept proportions were renormalized to sum to 1)")
    for s in body.subsets:
        lines.append(f"{s.name:<14}{s.proportion:>11.4g}{s.max_tokens:>17,}{s.val_tokens:>13,}{s.epochs:>8.3g}  "
                     f"{s.out_root}")
    if body.replay_fraction is not None:
        lines.insert(1, f"(domain corpus + replay: the mix's subsets share replay_fraction {body.replay_fraction:g} "
                        "of the total)")
    for s in body.subsets:
        if s.repeat:
            lines.append(f"{s.name}: {s.repeat.source_tokens:,} tokens in the corpus, {s.max_tokens:,} converted "
                         f"for train, repeated {s.repeat.epochs:.3g} epochs to fill its {s.repeat.budget_tokens:,} "
                         f"(max_domain_epochs {body.max_domain_epochs:g})")
    lines += ["", "commands:"] + [shlex.join(s.command()) for s in body.subsets]
    return "\n".join(lines)
