"""``make demo-sweep``: the replay sweep (``cpt_replay_sweep``) on the bundled code corpus with the Dolmino sample
as replay, the tiny random Llama as the proxy, three replay fractions, on the CPU; it ends with the sweep's
report. A tiny random model's numbers show the mechanics, not a real recommendation."""

from __future__ import annotations

from pathlib import Path

from cpt_pipeline.dag_shapes import REPLAY_SWEEP
from cpt_tasks.layout import SWEEP_PNG, SWEEP_REPORT_JSON, SWEEP_REPORT_MD, run_dir, safe_run_id

SHAPE = REPLAY_SWEEP
# Each proxy run: 700,000 tokens, so that at the largest fraction (0.5) the replay's 350,000 are the default demo's
# total, which the sample holds (its dclm, the largest share, has ~190,000 tokens); the corpus at fraction 0 is
# 1.75 epochs of the code corpus. Training: the demo's 20 batches of the tiny model.
SWEEP_DEMO = {"proxy_tokens": 700_000, "sweep_fractions": [0, 0.25, 0.5]}
PER_SUBSET = "## Held-out loss per subset"  # the report's section the summary leaves to the file
CAVEAT = ("A tiny random model's numbers show how the sweep works, not how much replay this corpus needs: run "
          "cpt_replay_sweep with a real proxy model (proxy_model) for a recommendation.")


def sweep_conf(conf: dict) -> dict:
    """The demo's Params (``make demo-domain``'s) as the sweep's: the tiny model as the proxy, the total per proxy
    run, three fractions; the Params the sweep does not have left out."""
    swept = {k: v for k, v in conf.items() if k not in ("total_tokens", "model", *SHAPE.drop)}
    return swept | {"proxy_model": conf["model"]} | SWEEP_DEMO


def summarize_sweep(storage_root: Path, run_id: str, tasks: list[str]) -> str:
    """The sweep's tasks, its report (Markdown) and where its files are, and the caveat."""
    folder = Path(run_dir(str(storage_root), SHAPE.dag_id, safe_run_id(run_id)))
    lines = [f"Run {run_id}", "", *tasks, ""]
    report = folder / SWEEP_REPORT_MD
    if (folder / SWEEP_REPORT_JSON).is_file() and report.is_file():
        text = report.read_text().split(PER_SUBSET, 1)[0].rstrip()  # each subset's losses: in the report
        lines += [f"Replay sweep: {folder / SWEEP_REPORT_JSON}, {report}, {folder / SWEEP_PNG}", "", text, "",
                  f"Each proxy run's held-out loss per subset: {report}", ""]
    return "\n".join([*lines, CAVEAT])
