"""A finished run's record: the metrics history (JSON lines), the loss curve (PNG), the run manifest (written
last: the completion marker) and the plan's finished-run pointer that the DAG reads (not for a replay sweep's
proxy run: it trained on one fraction's draw, not on the plan's mix, and its sweep has one run per fraction)."""

from __future__ import annotations

import json
import statistics

from cpt_tasks.documents import write_document
from cpt_tasks.documents.train_docs import FinishedRun, RunManifest
from cpt_tasks.layout import short_run_name
from cpt_tasks.pictures import png_bytes
from cpt_tasks.runs.status import RunPaths
from cpt_tasks.storage import write_bytes_atomic


def summarize(history: list[dict]) -> dict:
    """Headline metrics of a run from its per-step history."""
    losses = [r["loss"] for r in history if "loss" in r]
    evals = [r for r in history if r.get("eval")]
    summary: dict = {"steps_recorded": len(history)}
    if losses:
        tail = losses[-min(10, len(losses)):]
        summary.update(first_train_loss=losses[0], final_train_loss=losses[-1], min_train_loss=min(losses),
                       final_train_loss_mean10=sum(tail) / len(tail))
    if evals:
        last = evals[-1]
        summary.update(eval_step=last["step"], eval_loss=last["eval"],
                       eval_loss_mean=sum(last["eval"].values()) / len(last["eval"]))
    for key in ("tokens_per_sec", "device_tokens_per_sec", "mfu"):
        values = [r[key] for r in history if key in r]
        if values:
            summary[f"{key}_median"] = statistics.median(values)
    return summary


def loss_figure(history: list[dict], title: str, start_step: int | None):
    """The loss picture (a matplotlib Figure): train loss per step, eval loss per subset, where the last attempt
    resumed; whole steps on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    train = [(r["step"], r["loss"]) for r in history if "loss" in r]
    if train:
        ax.plot(*zip(*train), color="#1c7ed6", linewidth=1.4, label="train")
    subsets = sorted({k for r in history for k in r.get("eval", {})})
    for index, name in enumerate(subsets):  # colours after C0, train's blue
        points = [(r["step"], r["eval"][name]) for r in history if name in r.get("eval", {})]
        ax.plot(*zip(*points), marker="o", markersize=4, linewidth=1.0, color=f"C{index % 9 + 1}",
                label=f"held-out {name}")
    if start_step:
        ax.axvline(start_step, color="#868e96", linestyle="--", linewidth=1.0, label=f"resumed at step {start_step}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step", fontsize=10)
    ax.set_ylabel("cross-entropy loss (nats)", fontsize=10)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8.5, ncol=2)
    fig.tight_layout()
    return fig


def render_loss_png(history: list[dict], title: str, start_step: int | None) -> bytes:
    """:func:`loss_figure` as PNG bytes."""
    return png_bytes(loss_figure(history, title, start_step))


def loss_title(run_name: str) -> str:
    """A short title for a run's loss picture: its plan (8 hex digits) and its run id, at most ~60 characters."""
    return f"Training loss · {short_run_name(run_name)}"


def write_run_record(paths: RunPaths, manifest: RunManifest, history: list[dict]) -> RunManifest:
    """Write metrics.jsonl and loss.png, then the run manifest (last but one), then the plan's finished-run
    pointer (a plain run's only); return the manifest."""
    write_bytes_atomic(paths.metrics, "".join(json.dumps(r) + "\n" for r in history).encode())
    write_bytes_atomic(paths.loss_png, render_loss_png(history, loss_title(paths.run_name), manifest.start_step))
    write_document(paths.manifest, manifest)
    if manifest.sweep_fraction is not None:  # a proxy run: found by its own run id (layout.sweep_run_id)
        return manifest
    pointer = FinishedRun(run_name=paths.run_name, run_folder=paths.folder, run_manifest=paths.manifest,
                          plan_fingerprint=manifest.plan.fingerprint, final_step=manifest.final_step,
                          train_tokens=manifest.train_tokens, checkpoint=manifest.checkpoint,
                          hf_export=manifest.hf_export, finished_at=manifest.finished_at)
    write_document(paths.finished_pointer(manifest.plan.fingerprint), pointer)
    return manifest
