"""One proxy run of a replay sweep (``--sweep_fraction``): its draw, checked against the verification report,
and what the run makes of it.

A sweep converts every component once, at the largest budget any of its replay fractions needs; each proxy run
trains on its own draw from that data: ``choose`` rows per stream (Streams' absolute weighting: an epoch is
exactly the sum of the streams' ``choose``, a stream drawing fewer rows than it holds takes a sample of them,
one drawing more repeats them), and a component with 0 rows has no stream. Its default length is one pass
over the draw. The fraction is one of the run's settings (each fraction's run is its own; a retry resumes the
right one) and is recorded in the run manifest and as an MLflow tag and parameter. Pure: no heavy imports.
"""

from __future__ import annotations

from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.documents.plan_docs import SweepDraw
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.errors import UserError

SETTING = "sweep_fraction"  # its name in the run's settings, the MLflow parameter and (cpt.<name>) tag


def proxy_draw(cfg: TrainConfig, report: VerifyReport) -> SweepDraw | None:
    """The draw of ``cfg.sweep_fraction`` from the report's sweep (None without --sweep_fraction); UserError
    when the report is not a sweep's, the fraction is not swept, or the draw does not fit the report."""
    if cfg.sweep_fraction is None:
        return None
    where = f"--sweep_fraction {cfg.sweep_fraction:g}: the verify report {cfg.report}"
    if report.sweep is None:
        raise UserError(f"{where} is not a replay sweep's (it has no sweep: its plan was made without "
                        "--sweep_fractions); train it without --sweep_fraction, or plan and verify a sweep")
    draw = report.sweep.draw(cfg.sweep_fraction, f"{where}: ")
    names = [s.name for s in report.subsets]
    unknown = sorted(set(draw.rows) - set(names))
    if unknown:
        raise UserError(f"{where}: the draw names component(s) {', '.join(unknown)} that the report does not "
                        f"verify ({', '.join(names)})")
    negative = sorted(name for name, rows in draw.rows.items() if rows < 0)
    if negative:
        raise UserError(f"{where}: the draw gives a negative number of rows for {', '.join(negative)}")
    if draw_rows(draw) == 0:
        raise UserError(f"{where}: the draw has no rows to train on")
    return draw


def draw_rows(draw: SweepDraw) -> int:
    """The rows one pass over the draw trains on (every component's rows)."""
    return sum(draw.rows.values())


def chosen_rows(draw: SweepDraw, subset: str) -> int:
    """Rows the proxy run draws from ``subset`` per epoch (0: left out; a component the draw omits gives none)."""
    return draw.rows.get(subset, 0)


def sweep_settings(cfg: TrainConfig) -> dict:
    """The fraction as one of the run's settings (nothing without --sweep_fraction: a plain run's are as before)."""
    return {} if cfg.sweep_fraction is None else {SETTING: cfg.sweep_fraction}


def sweep_tags(cfg: TrainConfig) -> dict[str, str]:
    """The MLflow tag of a proxy run (none for a plain run)."""
    return {} if cfg.sweep_fraction is None else {f"cpt.{SETTING}": f"{cfg.sweep_fraction:g}"}


def sweep_params(cfg: TrainConfig) -> dict[str, str]:
    """The MLflow parameter of a proxy run (none for a plain run)."""
    return {} if cfg.sweep_fraction is None else {SETTING: f"{cfg.sweep_fraction:g}"}
