"""The plan as people read it (``cpt-tasks plan`` prints it on stderr): one line per component, the domain's
repetition (estimated epochs marked ``~``: verify counts the real ones), a replay sweep's draws (one line per
fraction), where a recommended replay fraction came from, and the equivalent convert command of each component or,
for one converted in parts, of each part."""

from __future__ import annotations

import shlex

from cpt_tasks.documents.plan_docs import Plan, PlannedSubset


def format_plan(body: Plan) -> str:
    """A readable table of the plan, and the equivalent convert command of each subset."""
    name = max([len("subset"), *(len(s.name) for s in body.subsets)]) + 2  # columns fit the longest name
    train = max([len("max_tokens"), *(len(f"{s.max_tokens:,}") for s in body.subsets)]) + 2
    val = max([len("val_tokens"), *(len(f"{s.val_tokens:,}") for s in body.subsets)]) + 2
    lines = [f"plan {body.fingerprint[:12]}: {body.total_tokens:,} train tokens, mix {body.mix.name}, "
             f"concat {body.concat_tokens}",
             f"{'subset':<{name}}{'proportion':>10}{'max_tokens':>{train}}{'val_tokens':>{val}}{'epochs':>8}"
             f"{'parts':>6}  out_root"]
    if body.mix.renormalized:
        lines.insert(1, f"(subsets left out of mix {body.mix.name}: the kept proportions were renormalized to sum to 1)")
    for s in body.subsets:
        lines.append(f"{s.name:<{name}}{s.proportion:>10.4g}{s.max_tokens:>{train},}{s.val_tokens:>{val},}"
                     f"{epochs_cell(s):>8}{s.part_count:>6}  {s.out_root}")
    lines[1:1] = heading_lines(body)
    lines += [repeat_line(s, body.max_domain_epochs) for s in body.subsets if s.repeat]
    lines += sweep_lines(body)
    lines += ["", "commands (one per conversion: a subset, or each part of one):"]
    lines += [shlex.join(command) for s in body.subsets for command in s.commands()]
    return "\n".join(lines)


def epochs_cell(s: PlannedSubset) -> str:
    """The epochs column: ``1``, a counted repetition's epochs, ``~`` before an estimate, ``?`` without one."""
    if s.repeat is None or not s.repeat.estimated:
        return f"{s.epochs:.3g}"
    return "?" if s.repeat.epochs is None else f"~{s.repeat.epochs:.3g}"


def repeat_line(s: PlannedSubset, max_epochs: float | None) -> str:
    """What the plan knows of a corpus that repeats: counted (plans made before estimates), or estimated."""
    r, limit = s.repeat, f"max_domain_epochs {max_epochs or 1:g}"
    if not r.estimated:
        return (f"{s.name}: {r.source_tokens:,} tokens in the corpus, {s.max_tokens:,} converted for train, repeated "
                f"{r.epochs:.3g} epochs to fill its {r.budget_tokens:,} ({limit})")
    size = "not estimated (no files to sample)" if r.source_tokens is None else \
        f"estimated at {r.source_tokens:,} tokens"
    guess = "" if r.epochs is None else f"; estimated ~{r.epochs:.3g} epochs"
    return (f"{s.name}: may be short of its budget, {size}: converted val first, train up to its "
            f"{r.budget_tokens:,} tokens; training repeats what train holds to {r.budget_rows:,} rows, verify counts "
            f"the epochs from the converted rows and refuses more than {limit}{guess}")


def heading_lines(body: Plan) -> list[str]:
    """What the replay fraction is and where it came from (nothing for a plan of the mix alone)."""
    lines = []
    if body.replay_from is not None:
        source = body.replay_from
        lines.append(f"replay fraction {source.fraction:g} (recommended by the replay sweep {source.sweep_run}, "
                     f"{source.report})")
    if body.replay_fraction == 0:
        lines.append("(replay fraction 0: the domain corpus gets the whole total; the mix's subsets are left out)")
    elif body.replay_fraction is not None:
        lines.append(f"(domain corpus + replay: the mix's subsets share replay_fraction {body.replay_fraction:g} "
                     "of the total)")
    if body.sweep is not None:
        lines.append(f"(replay sweep over fractions {', '.join(f'{f:g}' for f in body.sweep.fractions)}: each "
                     "component converted once at the largest budget any fraction needs; proportions are of those "
                     "budgets)")
    return lines


def sweep_lines(body: Plan) -> list[str]:
    """A replay sweep's draws: one line per fraction, the train rows each component gives that proxy run."""
    if body.sweep is None:
        return []
    lines = ["", f"replay sweep: each proxy run's draw (train rows of {body.concat_tokens} tokens):"]
    for draw in body.sweep.draws:
        tokens = sum(draw.rows.values()) * body.concat_tokens
        lines.append(f"  replay {draw.fraction:<6g} {tokens:>14,} tokens: "
                     + ", ".join(f"{name} {rows:,}" for name, rows in draw.rows.items()))
    return lines
