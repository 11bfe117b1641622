"""The report's contents and pictures: base vs trained per subset (held-out loss, perplexity) and per ICL task
(score with correct/n), the delta and whether training made it better; as Markdown, a PNG and a text table for
the CLI and the demo's summary; and the continual-pretraining summary: what the domain gained (its held-out loss
and the ICL tasks made from its held-out data) and what the replay data kept or forgot (without a domain, the
replay data's change, plainly: nothing was meant to be gained)."""

from __future__ import annotations

import textwrap

from cpt_tasks.documents.evaluate_docs import CptChange, CptSummary, EvalReport, EvalRow, EvalWorkerOutcome
from cpt_tasks.layout import short_run_name
from cpt_tasks.pictures import png_bytes

LOSS_METRICS = ("LanguageCrossEntropy", "LanguagePerplexity")  # per subset, in this order
LOWER_IS_BETTER = ("LanguageCrossEntropy", "LanguagePerplexity", "CalibrationError")
EXPLAINED = {
    "LanguageCrossEntropy": "held-out loss: mean next-token cross-entropy (nats) over every scored token of the "
                            "subset's val split (rows of concat_tokens; each row's last position has no target)",
    "LanguagePerplexity": "exp(held-out loss)",
    "InContextLearningLMAccuracy": "share of examples whose continuation the model predicts exactly, token for "
                                   "token, by greedy decoding",
    "InContextLearningMultipleChoiceAccuracy": "share of examples whose correct choice gets the lowest loss",
    "InContextLearningGenerationExactMatchAccuracy": "share of examples whose generated answer matches exactly",
}
SAME = 1e-9
HELDOUT_PREFIX = "heldout_"  # the generated default tasks' labels: heldout_<component> (evaluate.tasks)


def compare(outcome: EvalWorkerOutcome) -> list[EvalRow]:
    """One row per subset loss/perplexity and per ICL score found for both models, subsets first."""
    base, trained = outcome.metrics["base"], outcome.metrics["trained"]
    rows = []
    for key in base:
        if key not in trained:
            continue
        parts = key.split("/")  # metrics/<evaluator label...>/<metric>
        metric, evaluator = parts[-1], parts[1:-1]
        if evaluator[0] == "eval":
            if metric not in LOSS_METRICS:
                continue
            kind, name = "loss", "/".join(evaluator[1:])
        else:
            kind, name = "icl", "/".join(evaluator)
        lower = any(word in metric for word in LOWER_IS_BETTER)
        delta = trained[key].value - base[key].value
        verdict = "same" if abs(delta) <= SAME else "better" if (delta < 0) == lower else "worse"
        rows.append(EvalRow(kind=kind, name=name, metric=metric, key=key, base=base[key], trained=trained[key],
                            delta=delta, verdict=verdict, lower_is_better=lower))
    order = {m: i for i, m in enumerate(LOSS_METRICS)}
    return sorted(rows, key=lambda r: (r.kind != "loss", order.get(r.metric, 9) if r.kind == "loss" else 0))


def headline(rows: list[EvalRow]) -> dict:
    """Counts of better/worse subsets and tasks, and the mean held-out loss of each model."""
    losses = [r for r in rows if r.metric == "LanguageCrossEntropy"]
    icl = [r for r in rows if r.kind == "icl"]
    summary: dict = {"subsets": len(losses), "subsets_better": sum(r.verdict == "better" for r in losses),
                     "tasks": len(icl), "tasks_better": sum(r.verdict == "better" for r in icl),
                     "tasks_worse": sum(r.verdict == "worse" for r in icl)}
    if losses:
        summary["mean_val_loss_base"] = sum(r.base.value for r in losses) / len(losses)
        summary["mean_val_loss_trained"] = sum(r.trained.value for r in losses) / len(losses)
    return summary


def task_component(name: str, components) -> str | None:
    """The component an ICL task was made from: the generated default tasks are labelled
    ``heldout_<component>`` (:func:`cpt_tasks.evaluate.tasks.generate_default_tasks`), their rows
    ``heldout_<component>/<shots>``; None for any other task (a task list's own: general ability)."""
    label = name.split("/")[0]
    return next((c for c in components if label == f"{HELDOUT_PREFIX}{c}"), None)


def cpt_summary(rows: list[EvalRow], roles: dict[str, str]) -> CptSummary:
    """Gain: each domain component's held-out loss and the ICL tasks made from its held-out data; forgetting:
    each replay component's held-out loss, its ICL tasks and every other ICL task (general ability), base vs
    trained. ``roles``: component -> replay or domain."""
    def change(row: EvalRow) -> CptChange:
        return CptChange(name=row.name, metric=row.metric, base=row.base.value, trained=row.trained.value,
                         delta=row.delta, lower_is_better=row.lower_is_better, verdict=row.verdict)

    def role(row: EvalRow) -> str:
        component = row.name if row.kind == "loss" else task_component(row.name, roles)
        return roles.get(component, "replay") if component else "replay"

    picked = [r for r in rows if r.kind == "loss" and r.metric == "LanguageCrossEntropy"]
    picked += [r for r in rows if r.kind == "icl"]
    return CptSummary(gain=[change(r) for r in picked if role(r) == "domain"],
                      forgetting=[change(r) for r in picked if role(r) != "domain"],
                      domains=[name for name, found in roles.items() if found == "domain"])


def shown_summary(report: EvalReport) -> CptSummary:
    """The summary to show: the report's own, or for a report written before ``domains`` existed (which counted
    every ICL task as forgotten), one made again from its rows and its components' roles."""
    subsets = getattr(report, "subsets", None)
    if report.cpt.domains is None and subsets:
        return cpt_summary(report.rows, {s.name: s.role for s in subsets})
    return report.cpt


def _groups(summary: CptSummary) -> list[tuple[str, list[CptChange]]]:
    """(title, changes): gained and forgotten; without a domain the replay data and the other ICL tasks, plainly
    (nothing was meant to be gained, so nothing reads as forgotten)."""
    if summary.has_domain:
        return [("gained", summary.gain), ("forgotten", summary.forgetting)]

    def replay(c: CptChange) -> bool:
        return c.metric == "LanguageCrossEntropy" or c.name.startswith(HELDOUT_PREFIX)

    return [("replay data", [c for c in summary.forgetting if replay(c)]),
            ("other tasks", [c for c in summary.forgetting if not replay(c)])]


def cpt_heading(summary: CptSummary) -> str:
    """The line above the gained/forgotten table."""
    if summary.has_domain:
        return "Gained and forgotten (continual pretraining):"
    return "Nothing to gain: no domain corpus in this run. The replay data, base vs trained:"


def cpt_lines(summary: CptSummary) -> list[str]:
    """The gained/forgotten table as plain text lines (the CLI, the demo's summary)."""
    if not summary.gain and not summary.forgetting:
        return []
    groups = _groups(summary)
    width = max(len(c.name) for c in summary.gain + summary.forgetting) + 2
    indent = max(len(title) for title, _ in groups) + 2
    lines = [f"{'':<{indent}}{'component / task':<{width}}{'base':>9}{'trained':>9}{'delta':>9}"]
    for title, changes in groups:
        for number, c in enumerate(changes):
            what = "loss" if c.metric == "LanguageCrossEntropy" else "score"
            lines.append(f"{title if number == 0 else '':<{indent}}{c.name:<{width}}{c.base:>9.4f}{c.trained:>9.4f}"
                         f"{c.delta:>+9.4f}  {what} {c.verdict}")
    return lines


def _cpt_markdown(summary: CptSummary) -> list[str]:
    if summary.has_domain:
        lines = ["## Gained and forgotten", ""]
    else:
        lines = ["## The replay data, base vs trained", "", "Nothing to gain: no domain corpus in this run (a plan "
                 "without `domain`): nothing was meant to be learned; below is how the replay data moved.", ""]
    lines += ["| | component / task | metric | base | trained | delta | |", "|---|---|---|---:|---:|---:|---|"]
    for title, changes in _groups(summary):
        lines += [f"| {title if i == 0 else ''} | {c.name} | {c.metric} | {c.base:.4f} | {c.trained:.4f} | "
                  f"{c.delta:+.4f} | {c.verdict} |" for i, c in enumerate(changes)]
    if summary.has_domain:
        lines += ["", "Gained: the held-out loss of your corpus and the ICL tasks made from it (a fall in loss, a "
                  "rise in score: the model learned it). Forgotten: the held-out loss of the replay data, its ICL "
                  "tasks and any other task (general ability); a rise in loss or a fall in score is what was "
                  "forgotten.", ""]
    else:
        lines += ["", "Replay data: each component's held-out loss and the ICL tasks made from it (lower loss, "
                  "higher score is better). Other tasks: the task list's own (general ability).", ""]
    return lines


def _score(row: EvalRow, side: str) -> str:
    value = getattr(row, side)
    if row.kind == "icl" and value.correct is not None and value.n:
        return f"{value.value:.4f} ({value.correct}/{value.n})"
    return f"{value.value:.4f}"


def _table(rows: list[EvalRow]) -> list[list[str]]:
    """Header + one line per row: what, metric, n, base, trained, delta, verdict."""
    lines = [["subset / task", "metric", "n", "base", "trained", "delta", ""]]
    for row in rows:
        lines.append([row.name, row.metric, str(row.trained.n or ""), _score(row, "base"), _score(row, "trained"),
                      f"{row.delta:+.4f}", row.verdict])
    return lines


def render_markdown(report: EvalReport) -> str:
    """The report as Markdown: what was compared, the table, what the metrics and tasks mean."""
    lines = [f"# Did continual pretraining help? `{report.run_name}`", "",
             f"- base: `{report.base_model.source}`" + (f" @ `{report.base_model.revision}`"
                                                        if report.base_model.revision else ""),
             *([f"- base results reused from `{report.base_reused}` (same base, data, tasks, settings)"]
               if report.base_reused else []),
             f"- trained: `{report.hf_export}` (plan `{report.plan_fingerprint[:12]}`)",
             f"- held-out data: the val split of {len(report.subsets)} subsets; ICL tasks: {report.tasks.source}",
             f"- settings: {', '.join(f'{k} {v}' for k, v in report.settings.items() if v is not None)}", ""]
    lines += _cpt_markdown(shown_summary(report)) + ["## Every metric", ""]
    table = _table(report.rows)
    lines.append("| " + " | ".join(table[0]) + " |")
    lines.append("|" + "|".join(["---", "---", "---:", "---:", "---:", "---:", "---"]) + "|")
    lines += ["| " + " | ".join(cells) + " |" for cells in table[1:]]
    lines += ["", "n: scored tokens (loss, perplexity) or examples (ICL, with correct/n). Lower is better for loss "
              "and perplexity, higher for ICL scores.", "", f"ICL tasks measure: {report.tasks.measures}.", ""]
    lines += [f"- **{name}**: {text}" for name, text in report.metrics_explained.items()]
    return "\n".join(lines) + "\n"


def format_summary(report: EvalReport) -> str:
    """The table as plain text (the CLI's output and the demo's summary)."""
    table = _table(report.rows)
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    right = {2, 3, 4, 5}
    text = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            .rstrip() for line in table]
    summary = shown_summary(report)
    cpt = cpt_lines(summary)
    return "\n".join(text + (["", cpt_heading(summary), *cpt] if cpt else []))


VERDICT_COLORS = {"better": "#2f9e44", "worse": "#e03131", "same": "#adb5bd"}


MIN_SPAN = 0.02  # the least range of a panel's y axis: changes of zero (a tiny model's ICL scores) stay readable


def eval_figure(report: EvalReport):
    """Where training helped (a matplotlib Figure): the change of held-out loss per component and of the ICL
    score per task, what your corpus gained first (its loss, the tasks made from it), then what replay kept
    (without a domain: the replay data, plainly), coloured by verdict (legend), each bar labelled
    base → trained; labelled axes, a short title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    summary = shown_summary(report)
    gained = {(c.name, c.metric) for c in summary.gain}
    losses = [r for r in report.rows if r.metric == "LanguageCrossEntropy"]
    icl = [r for r in report.rows if r.kind == "icl"]
    loss_axis = ("held-out component", "loss change, trained − base (nats)")
    icl_axis = ("ICL task", "score change, trained − base")
    if summary.has_domain:
        candidates = [
            ([r for r in losses if (r.name, r.metric) in gained], "Gained: your corpus's held-out loss (lower is "
             "better)", loss_axis),
            ([r for r in icl if (r.name, r.metric) in gained], "Gained: ICL tasks on your corpus (higher is "
             "better)", icl_axis),
            ([r for r in losses if (r.name, r.metric) not in gained], "Forgotten? replay loss (lower is better)",
             loss_axis),
            ([r for r in icl if (r.name, r.metric) not in gained], "Forgotten? other ICL tasks (higher is better)",
             icl_axis)]
    else:  # nothing was meant to be gained: the replay data's change, plainly
        candidates = [(losses, "Replay data: held-out loss (lower is better)", loss_axis),
                      (icl, "ICL tasks (higher is better)", icl_axis)]
    panels = [panel for panel in candidates if panel[0]]
    grid = len(panels) == 4  # gained | kept, losses above ICL tasks: both rows have the same bar counts
    if grid:
        panels = [panels[0], panels[2], panels[1], panels[3]]
    columns = panels[:2] if grid else panels
    widths = [max(4.0, 1.15 * len(rows) + 1.5) for rows, _, _ in columns] or [6.0]  # room for every bar's label
    fig, axes = plt.subplots(2 if grid else 1, len(widths), figsize=(max(sum(widths), 8.0), 9.5 if grid else 5.0),
                             dpi=110, squeeze=False, gridspec_kw={"width_ratios": widths})
    for ax, width, (rows, title, (xlabel, ylabel)) in zip(axes.flat, widths * (2 if grid else 1), panels):
        xs = list(range(len(rows)))
        bars = ax.bar(xs, [r.delta for r in rows], color=[VERDICT_COLORS[r.verdict] for r in rows], width=0.6)
        for bar, row in zip(bars, rows):
            label = f"{row.base.value:.4g}\n→ {row.trained.value:.4g}"  # the table has the counts
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, row.delta), ha="center", fontsize=8.5,
                        va="top" if row.delta < 0 else "bottom", xytext=(0, -3 if row.delta < 0 else 3),
                        textcoords="offset points")
        ax.axhline(0, color="#495057", linewidth=0.8)
        low, high = min(0.0, *(r.delta for r in rows)), max(0.0, *(r.delta for r in rows))
        room = 0.45 * max(high - low, MIN_SPAN)  # each bar's label fits, on either side of zero (a "same" bar too)
        ax.set_ylim(low - room, high + room)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.set_xlim(-0.8, max(len(rows), 2) - 0.2)  # a lone bar keeps a bar's width
        ax.set_xticks(xs, [r.name.split("/")[0] for r in rows], rotation=25, ha="right", fontsize=9.5)
        ax.tick_params(axis="y", labelsize=9)
        ax.set_xlabel(xlabel, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=10)
        ax.set_title(_fit_title(title, int(width * 9)), fontsize=11)
    legend = [Patch(color=VERDICT_COLORS[v], label=text) for v, text in
              (("better", "better after training"), ("worse", "worse after training"), ("same", "no change"))]
    fig.legend(handles=legend, loc="lower center", ncol=3, fontsize=9.5, frameon=False)
    fig.suptitle(f"Did continual pretraining help? · {short_run_name(report.run_name)}", fontsize=12)
    fig.tight_layout(rect=(0, 0.04 if grid else 0.06, 1, 1))
    return fig


def _fit_title(title: str, width: int) -> str:
    """A panel's title within ``width`` characters: its "(… is better)" on a line of its own, the rest wrapped."""
    if len(title) <= width:
        return title
    head, paren, tail = title.partition(" (")
    return "\n".join([*textwrap.wrap(head, width), *([paren.strip() + tail] if paren else [])])


def render_png(report: EvalReport) -> bytes:
    """:func:`eval_figure` as PNG bytes."""
    return png_bytes(eval_figure(report))
