"""The verification report: JSON (for training and lineage), a Markdown table, and a planned-vs-trained mix
bar chart (PNG, :mod:`cpt_tasks.verify.picture`), written side by side.

A component smaller than its budget (a repeated domain corpus) is converted once and repeated in training: the
table shows its unique train tokens, its epochs and the tokens training draws from it (unique × epochs), and
every share is of those trained tokens, so it compares with the plan's. The epochs are the real ones: its budget's
rows over the train rows its conversion wrote (the plan only estimates them)."""

from __future__ import annotations

from cpt_tasks.documents import write_document
from cpt_tasks.documents.verify_docs import SubsetReport, VerifyReport
from cpt_tasks.layout import REPORT_JSON, REPORT_MD, REPORT_PNG
from cpt_tasks.storage import join, write_bytes_atomic
from cpt_tasks.verify.picture import render_png

COLUMNS = ("subset", "role", "planned", "unique", "epochs", "trained", "share", "planned share", "val", "status")
RIGHT = {"planned", "unique", "epochs", "trained", "share", "planned share", "val"}


def format_epochs(epochs: float) -> str:
    """``1`` for a component seen once, else two decimals (``1.52``)."""
    return "1" if epochs == 1.0 else f"{epochs:.2f}"


def totals_line(report: VerifyReport) -> str:
    """Trained tokens against planned; with a repeated component, the unique tokens and its epochs too."""
    repeated = [s for s in report.subsets if s.trained_tokens is not None]
    trained = report.trained_tokens if report.trained_tokens is not None else report.realized_train_tokens
    line = f"{trained:,} of {report.total_tokens:,} planned train tokens"
    if repeated:
        line += (f" trained ({report.realized_train_tokens:,} unique; "
                 + ", ".join(f"{s.name} repeated {format_epochs(s.epochs)} epochs" for s in repeated) + ")")
    return line + "."


def markdown_table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """A Markdown table whose columns are padded to their widest cell (long names stay aligned as plain text);
    columns in ``right`` are right-aligned."""
    widths = [max(3, len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if i in right else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return [line(header), rule, *(line(r) for r in rows)]


def _row(s: SubsetReport) -> list[str]:
    return [s.name, s.role, f"{s.planned_trained:,}", f"{s.train_tokens:,}", format_epochs(s.epochs),
            f"{s.trained:,}", f"{s.share:.2%}", f"{s.proportion:.2%}", f"{s.val_tokens:,}", s.status]


def render_markdown(report: VerifyReport) -> str:
    """Subset, role, planned, unique, epochs, trained, share, planned share, val, status; then every failed
    check."""
    verdict = "PASSED" if report.ok else "FAILED"
    lines = [f"# Verification {verdict}", "",
             f"Plan `{report.plan.fingerprint[:12]}` (sha256 `{report.plan.sha256[:12]}`), mix "
             f"`{report.mix}`, concat {report.concat_tokens}, {totals_line(report)}", ""]
    lines += markdown_table(list(COLUMNS), [_row(s) for s in report.subsets],
                            {i for i, c in enumerate(COLUMNS) if c in RIGHT})
    lines += ["", "planned and trained: train tokens training draws from each subset (a repeated one: its unique "
              "tokens × epochs); unique: what its conversion wrote; share: of the trained tokens."]
    repeated = [s for s in report.subsets if s.trained_tokens is not None]
    if repeated:
        lines += ["", "Repeated in training (a corpus smaller than its budget, Streams' `choose`; epochs counted from "
                  "its converted train rows):", ""]
        lines += [f"- {s.name} ({s.role}): {s.train_tokens:,} unique train tokens × {s.epochs:.3f} epochs = "
                  f"{s.trained:,} trained tokens" for s in repeated]
    lines += sweep_section(report)
    failed = [[s.name, c.check, c.detail] for s in report.subsets for c in s.checks if not c.ok]
    if failed:
        lines += ["", "## Failed checks", "", *markdown_table(["subset", "check", "detail"], failed, set())]
    return "\n".join(lines) + "\n"


def sweep_section(report: VerifyReport) -> list[str]:
    """A replay sweep's draws: one row per proxy run, the train rows it draws from each component."""
    if report.sweep is None:
        return []
    names = [s.name for s in report.subsets]
    rows = [[f"{d.fraction:g}", *(f"{d.rows.get(n, 0):,}" for n in names)] for d in report.sweep.draws]
    return ["", "Replay sweep: the table above is the data converted once for every proxy run (each component at "
            "the largest budget any fraction needs); each proxy run trains on its own draw, the train rows below "
            "(each checked, `sweep:<fraction>`, against the converted rows):", "",
            *markdown_table(["replay fraction", *names], rows, set(range(len(names) + 1)))]


def write_report(report: VerifyReport, folder: str) -> dict[str, str]:
    """Write the three files into ``folder`` (local or object storage), the JSON last; return their locations."""
    paths = {"json": join(folder, REPORT_JSON), "md": join(folder, REPORT_MD), "png": join(folder, REPORT_PNG)}
    write_bytes_atomic(paths["png"], render_png(report))
    write_bytes_atomic(paths["md"], render_markdown(report).encode())
    write_document(paths["json"], report)
    return paths
