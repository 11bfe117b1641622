"""The verification report: JSON (for training and lineage), a Markdown table, and a planned-vs-realized
mix bar chart (PNG), written side by side."""

from __future__ import annotations

import io

from cpt_tasks.documents import write_document
from cpt_tasks.documents.verify import VerifyReport
from cpt_tasks.layout import REPORT_JSON, REPORT_MD, REPORT_PNG
from cpt_tasks.storage import join, write_bytes_atomic


def render_markdown(report: VerifyReport) -> str:
    """Subset, planned, realized, share, status; then every failed check."""
    verdict = "PASSED" if report.ok else "FAILED"
    lines = [f"# Verification {verdict}", "",
             f"Plan `{report.plan.fingerprint[:12]}` (sha256 `{report.plan.sha256[:12]}`), mix "
             f"`{report.mix}`, concat {report.concat_tokens}, "
             f"{report.realized_train_tokens:,} of {report.total_tokens:,} planned train tokens.", "",
             "| subset | planned | realized | share | planned share | val | status |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for s in report.subsets:
        lines.append(f"| {s.name} | {s.planned_train_tokens:,} | {s.train_tokens:,} | {s.share:.2%} | "
                     f"{s.proportion:.2%} | {s.val_tokens:,} | {s.status} |")
    repeated = [s for s in report.subsets if s.epochs != 1.0]
    if repeated:
        lines += ["", "Repeated in training (a corpus smaller than its budget, Streams' `choose`):", ""]
        lines += [f"- {s.name} ({s.role}): {s.train_tokens:,} train tokens × {s.epochs:.3f} epochs = "
                  f"{s.trained_tokens or 0:,} trained tokens" for s in repeated]
    failed = [(s.name, c) for s in report.subsets for c in s.checks if not c.ok]
    if failed:
        lines += ["", "## Failed checks", "", "| subset | check | detail |", "|---|---|---|"]
        lines += [f"| {name} | {c.check} | {c.detail} |" for name, c in failed]
    return "\n".join(lines) + "\n"


def render_png(report: VerifyReport) -> bytes:
    """Grouped bars: planned vs realized train tokens per subset, failed subsets in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.name for s in report.subsets]
    planned = [s.planned_train_tokens for s in report.subsets]
    realized = [s.train_tokens for s in report.subsets]
    colors = {"ok": "#2b8a3e", "short": "#e8a317", "failed": "#c92a2a"}
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], planned, width=0.4, color="#adb5bd", label="planned")
    ax.bar([x + 0.2 for x in xs], realized, width=0.4, label="realized",
           color=[colors[s.status] for s in report.subsets])
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("train tokens")
    ax.set_title(f"Mix {report.mix}: planned vs realized ({'passed' if report.ok else 'FAILED'})")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_report(report: VerifyReport, folder: str) -> dict[str, str]:
    """Write the three files into ``folder`` (local or object storage), the JSON last; return their locations."""
    paths = {"json": join(folder, REPORT_JSON), "md": join(folder, REPORT_MD), "png": join(folder, REPORT_PNG)}
    write_bytes_atomic(paths["png"], render_png(report))
    write_bytes_atomic(paths["md"], render_markdown(report).encode())
    write_document(paths["json"], report)
    return paths
