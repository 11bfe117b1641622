"""The verification report's picture (``verify-mix.png``): per subset, the train tokens the plan asks for beside
the tokens training draws (a repeated component's unique part solid, its repetition hatched), coloured by
status, each labelled with its share against the plan's. Horizontal bars, so long component names get a line of
their own and never run into each other."""

from __future__ import annotations

import re

from cpt_tasks.documents.verify_docs import SubsetReport, VerifyReport
from cpt_tasks.pictures import png_bytes

STATUS_COLORS = {"ok": "#2b8a3e", "short": "#e8a317", "failed": "#c92a2a"}
STATUS_LABELS = {"ok": "trained (ok)", "short": "trained (short: source ran out)", "failed": "trained (failed)"}
PLANNED_COLOR = "#adb5bd"
NAME_WIDTH = 32  # characters per label line; longer names wrap (at - _ .), very long ones end in an ellipsis
NAME_LINES = 2
LEGEND_INCHES = 0.35


def wrap_name(name: str, width: int = NAME_WIDTH, lines: int = NAME_LINES) -> str:
    """A component name on at most ``lines`` lines of ``width`` characters, broken after - _ . where it can and
    cut with an ellipsis when it is longer still."""
    found = [""]
    for piece in re.findall(r"[^-_.]+[-_.]*|[-_.]+", name):
        if found[-1] and len(found[-1]) + len(piece) > width:
            found.append("")
        found[-1] += piece
    found = [line[i:i + width] for line in found for i in range(0, len(line), width)]  # a piece over the width
    if len(found) > lines:
        found = found[:lines]
        found[-1] = found[-1][:width - 1] + "…"
    return "\n".join(found)


def _label(s: SubsetReport) -> str:
    """The name, then (for a domain or a repeated subset) its role and epochs on a line of their own."""
    details = ([s.role] if s.role != "replay" else []) + ([f"×{s.epochs:.2f} epochs"] if s.epochs != 1.0 else [])
    return wrap_name(s.name) + ("\n" + " · ".join(details) if details else "")


def mix_figure(report: VerifyReport):
    """The planned-vs-trained chart as a matplotlib Figure (one row per subset, the first on top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import EngFormatter

    subsets = report.subsets
    labels = [_label(s) for s in subsets]
    row_inches = max(0.62, 0.2 * max(label.count("\n") + 1 for label in labels) + 0.12)
    fig_height = 1.9 + row_inches * len(subsets)
    fig, ax = plt.subplots(figsize=(9.0, fig_height), dpi=100)
    ys = list(range(len(subsets)))[::-1]
    height = 0.38
    ax.barh([y + height / 2 for y in ys], [s.planned_trained for s in subsets], height=height,
            color=PLANNED_COLOR, label="planned")
    colors = [STATUS_COLORS[s.status] for s in subsets]
    lows = [y - height / 2 for y in ys]
    ax.barh(lows, [s.train_tokens for s in subsets], height=height, color=colors)
    repeats = [(y, s) for y, s in zip(lows, subsets) if s.trained > s.train_tokens]
    for y, s in repeats:  # the repeated rows: the same data drawn again
        ax.barh(y, s.trained - s.train_tokens, left=s.train_tokens, height=height, color="white",
                edgecolor=STATUS_COLORS[s.status], hatch="///", linewidth=0.8)
    top = max([s.planned_trained for s in subsets] + [s.trained for s in subsets] + [1])
    for y, s in zip(lows, subsets):
        ax.annotate(f"{s.share:.1%} (plan {s.proportion:.1%})", (s.trained, y), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8.5)
    ax.set_xlim(0, top * 1.32)  # room for the share labels
    ax.set_ylim(-0.7, len(subsets) - 0.3)
    ax.set_yticks(ys, labels, fontsize=9, linespacing=1.15)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.tick_params(axis="x", labelsize=9)
    ax.set_xlabel("train tokens training draws (a repeated subset: unique × epochs)", fontsize=9.5)
    verdict = "passed" if report.ok else "FAILED"
    ax.set_title(f"Mix {report.mix}: planned vs trained tokens ({verdict})", fontsize=11)
    handles = [Patch(color=PLANNED_COLOR, label="planned")]
    handles += [Patch(color=STATUS_COLORS[k], label=STATUS_LABELS[k]) for k in STATUS_COLORS
                if any(s.status == k for s in subsets)]
    if repeats:
        handles.append(Patch(facecolor="white", edgecolor="#495057", hatch="///", label="repeated (epochs > 1)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, LEGEND_INCHES / fig_height, 1, 1))  # the legend below the axes
    return fig


def render_png(report: VerifyReport) -> bytes:
    """:func:`mix_figure` as PNG bytes."""
    return png_bytes(mix_figure(report))
