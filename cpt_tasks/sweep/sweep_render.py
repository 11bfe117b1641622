"""The replay sweep's report for people: ``sweep-report.md`` (every point with its fitted forgetting, the fit, the
recommendation and why, each subset's losses) and ``sweep.png`` (left: the gain/forgetting frontier, each point
labelled with its replay fraction and the recommended one marked; right: gain and forgetting against the fraction,
with the fitted curve and the tolerance)."""

from __future__ import annotations

from cpt_tasks.documents.sweep_docs import SweepReport
from cpt_tasks.pictures import png_bytes
from cpt_tasks.sweep.recommendation import predict

GAIN_COLOR, FORGET_COLOR, TOLERANCE_COLOR, PICK_COLOR = "#2b8a3e", "#c92a2a", "#868e96", "#1c7ed6"
STATUS_WORDS = {"recommended": "Recommended", "none_within_tolerance": "No fraction within the tolerance",
                "too_noisy": "Too noisy to recommend", "not_monotone": "Not monotone: no recommendation"}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2%}"


def _identity(report: SweepReport) -> list[str]:
    fields = [("domain", report.domain), ("proxy model", report.proxy_model),
              ("proxy tokens", f"{report.proxy_tokens:,}" if report.proxy_tokens is not None else None),
              ("replay mix", report.mix), ("tokenizer", report.tokenizer),
              ("corpus fingerprint", report.corpus_fingerprint)]
    return [f"- {name}: `{value}`" for name, value in fields if value is not None]


def _fit_lines(report: SweepReport) -> list[str]:
    fit = report.fit
    if fit.form == "exponential":
        p = fit.parameters
        shape = (f"forgetting(f) = {p['c']:.4g} + {p['k']:.4g}·exp(-{p['t']:.4g}·(f - {p['f0']:g})) "
                 "(Data Mixing Laws' form)")
    else:
        shape = "piecewise-linear through " + ", ".join(f"({f:g}, {v:+.4f})" for f, v in fit.knots)
    r2 = "—" if fit.r2 is None else f"{fit.r2:.3f}"
    exp_r2 = "not tried" if fit.exponential_r2 is None else f"{fit.exponential_r2:.3f}"
    return [f"- form: **{fit.form}**: {shape}", f"- why: {fit.why}",
            f"- R² {r2}, RMS residual {fit.rmse:.4f}; the exponential form's R²: {exp_r2}",
            f"- measured forgetting {'never rises' if fit.monotone else 'rises somewhere'} with more replay"]


def render_markdown(report: SweepReport) -> str:
    """The report as Markdown: the recommendation first, then every point, the fit and each subset's losses."""
    rec = report.recommendation
    pick = f"replay fraction **{rec.fraction:g}**" if rec.fraction is not None else "no replay fraction"
    lines = ["# Replay sweep", "", *_identity(report), "",
             f"## {STATUS_WORDS[rec.status]}: {pick}", "", rec.reason, "",
             f"Tolerance: {report.tolerance:.2%} ({report.tolerance_meaning}).", "",
             "## Points", "",
             "| replay fraction | domain gain | forgetting | predicted forgetting | within tolerance | ICL tasks worse |",
             "|---:|---:|---:|---:|:---:|---:|"]
    for point, predicted in zip(report.points, report.fit.predicted):
        mark = " ◀ recommended" if rec.fraction is not None and point.fraction == rec.fraction else ""
        lines.append(f"| {point.fraction:g}{mark} | {_pct(point.domain_gain)} | {_pct(point.forgetting)} | "
                     f"{_pct(predicted)} | {'yes' if predicted <= report.tolerance else 'no'} | "
                     f"{f'{point.icl_worse} of {len(point.icl)}' if point.icl else '—'} |")
    if rec.fraction is not None and all(p.fraction != rec.fraction for p in report.points):
        lines.append(f"| {rec.fraction:g} ◀ recommended (between the swept fractions) | "
                     f"{_pct(rec.expected_gain)} (interpolated) | — | {_pct(rec.predicted_forgetting)} | yes | — |")
    lines += ["", "Domain gain: (base - trained) / base of the domain's held-out loss; forgetting: the mean of "
              "(trained - base) / base over the replay subsets' held-out losses; base is the proxy's starting point. "
              "ICL tasks worse: the replay's ICL tasks (held-out next word of each replay subset, or the task list's) "
              "the proxy run scored lower on than its starting point; shown, not fitted.",
              "", "## Fit", "", *_fit_lines(report), "", "## Held-out loss per subset", "",
              "| replay fraction | subset | role | base | trained | change | evaluation report |",
              "|---:|---|---|---:|---:|---:|---|"]
    for point in report.points:
        for role, subset in [("domain", point.domain)] + [("replay", s) for s in point.replay]:
            lines.append(f"| {point.fraction:g} | {subset.name} | {role} | {subset.base:.4f} | {subset.trained:.4f} "
                         f"| {_pct(subset.relative_change)} | `{point.eval_report}` |")
    return "\n".join(lines) + "\n"


def sweep_figure(report: SweepReport):
    """The 1×2 picture as a matplotlib Figure: the frontier, and gain and forgetting against the fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import PercentFormatter

    rec, points = report.recommendation, report.points
    fractions = [p.fraction for p in points]
    gains, forgets = [100 * p.domain_gain for p in points], [100 * p.forgetting for p in points]
    tolerance = 100 * report.tolerance
    fig, (front, along) = plt.subplots(1, 2, figsize=(12.0, 4.8), dpi=100)

    front.plot(forgets, gains, "-", color=TOLERANCE_COLOR, linewidth=0.8, zorder=1)
    front.scatter(forgets, gains, color=GAIN_COLOR, zorder=2)
    for f, x, y in zip(fractions, forgets, gains):
        front.annotate(f"{f:g}", (x, y), xytext=(5, 4), textcoords="offset points", fontsize=9)
    front.axvline(tolerance, color=TOLERANCE_COLOR, linestyle=":", label=f"tolerance {report.tolerance:.2%}")
    if rec.fraction is not None:
        front.scatter([100 * rec.predicted_forgetting], [100 * rec.expected_gain], s=220, facecolors="none",
                      edgecolors=PICK_COLOR, linewidths=2, zorder=3, label=f"recommended {rec.fraction:g}")
    front.set_xlabel("forgetting: mean rise of replay held-out loss", fontsize=9.5)
    front.set_ylabel("domain gain: fall of the domain's held-out loss", fontsize=9.5)
    front.set_title("Gain vs forgetting (labels: replay fraction)", fontsize=11)

    grid = np.linspace(min(fractions), max(fractions), 200) if len(set(fractions)) > 1 else np.array(fractions)
    along.plot(fractions, forgets, "o", color=FORGET_COLOR, label="forgetting (measured)")
    along.plot(grid, [100 * predict(report.fit, f) for f in grid], "--", color=FORGET_COLOR,
               label=f"forgetting ({report.fit.form} fit)")
    along.axhline(tolerance, color=TOLERANCE_COLOR, linestyle=":", label="tolerance")
    gain_axis = along.twinx()
    gain_axis.plot(fractions, gains, "s-", color=GAIN_COLOR, label="domain gain (measured)")
    gain_axis.set_ylabel("domain gain", color=GAIN_COLOR, fontsize=9.5)
    if rec.fraction is not None:
        along.axvline(rec.fraction, color=PICK_COLOR, linewidth=1.5, label=f"recommended {rec.fraction:g}")
    along.set_xlabel("replay fraction", fontsize=9.5)
    along.set_ylabel("forgetting", color=FORGET_COLOR, fontsize=9.5)
    along.set_title("Gain and forgetting against the replay fraction", fontsize=11)
    for ax in (front, along, gain_axis):
        for axis in ([ax.xaxis, ax.yaxis] if ax is front else [ax.yaxis]):
            axis.set_major_formatter(PercentFormatter(decimals=1))
    handles = along.get_legend_handles_labels()
    more = gain_axis.get_legend_handles_labels()
    along.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="best")
    front.legend(fontsize=8, loc="best")
    words = STATUS_WORDS[rec.status] + (f": replay fraction {rec.fraction:g}" if rec.fraction is not None else "")
    fig.suptitle(f"Replay sweep of {report.domain}: {words}", fontsize=12)
    fig.tight_layout()
    return fig


def render_png(report: SweepReport) -> bytes:
    """``sweep.png``: :func:`sweep_figure` as PNG bytes."""
    return png_bytes(sweep_figure(report))
