"""From the sweep's measured points to a recommended replay fraction: each proxy run's evaluation report becomes a
point (domain gain, forgetting), forgetting is fitted against the replay fraction with a monotone curve, and the
smallest fraction whose predicted forgetting stays within the tolerance is recommended, or the report says plainly
why none can be (too noisy, not monotone, none within the tolerance).

The rules (their thresholds are the constants below, each justified where it is set):

- **Fit.** Forgetting should fall as replay grows. First the Data Mixing Laws form (Ye et al. 2024),
  ``c + k·exp(-t·(f - f0))`` with ``k >= 0`` and ``t > 0`` (non-increasing; ``f0`` is the smallest swept fraction,
  0 in the default sweep, which keeps it well conditioned), chosen with at least 3 distinct fractions when its R²
  reaches ``EXPONENTIAL_MIN_R2``. Else the isotonic (non-increasing, pool-adjacent-violators) fit through the
  points, joined by straight lines. With exactly 3 fractions the exponential has no residual degree of freedom:
  its R² then only says that the points are monotone and convex, as the form expects.
- **Too noisy.** No monotone curve explains the points: the better of the two isotonic fits (non-increasing,
  non-decreasing) and the exponential all leave, adjusted for their degrees of freedom, over ``1 - MIN_TREND_R2``
  of the variance of forgetting unexplained (adjusted R²; an isotonic fit's degrees of freedom are its number of
  distinct levels, Meyer & Woodroofe 2000), *and* the noise this leaves, ``sigma``, exceeds ``NOISE_TO_TOLERANCE``
  of the tolerance (noise far below the tolerance cannot change the answer: a flat curve well within it still
  recommends the smallest fraction). Isotonic regression absorbs noise that keeps the points in order, so only
  noise as large as the steps between fractions shows; a perfectly ordered sweep has no noise estimate and passes.
- **Not monotone.** The non-decreasing fit beats the non-increasing one and its rise exceeds ``MATERIAL_RISE`` of
  the tolerance: forgetting grows with more replay, the opposite of what replay is for.
- **Recommendation.** The smallest fraction of the swept range whose fitted forgetting is at most the tolerance,
  rounded up to ``RESOLUTION``: the most domain gain the tolerance allows, as gain falls when replay displaces the
  domain's tokens (checked on the points, and said when it does not hold).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from cpt_tasks.configs.recommend_config import DEFAULT_FORGETTING_TOLERANCE
from cpt_tasks.documents.evaluate_docs import EvalReport
from cpt_tasks.documents.sweep_docs import SubsetLoss, SweepFit, SweepPoint, SweepRecommendation, SweepReport
from cpt_tasks.errors import UserError

TOLERANCE_MEANING = ("forgetting = mean over the replay subsets of (trained - base) / base of held-out loss; a "
                     "fraction is accepted when the fitted forgetting there is at most {tolerance:.2%}")
LOSS_METRIC = "LanguageCrossEntropy"
EXPONENTIAL_MIN_POINTS = 3  # three parameters: with fewer distinct fractions any such curve fits
# The exponential must explain 90% of the variance of forgetting across the fractions: its residual RMS is then at
# most ~0.32 of the points' standard deviation, below the steps between the default sweep's fractions.
EXPONENTIAL_MIN_R2 = 0.9
# The monotone trend must explain 70% of the variance of forgetting, adjusted for its degrees of freedom (noise
# alone explains about 0). Simulated over the default 5 fractions: pure noise stays below it in 70-80% of draws
# (the rest are ordered by chance), a curve with noise a tenth (a fifth) of its spread reaches it in ~100% (~93%).
MIN_TREND_R2 = 0.7
NOISE_TO_TOLERANCE = 0.1  # ... and the noise above a tenth of the tolerance (smaller noise cannot move the answer)
MATERIAL_RISE = 0.1  # a rise of forgetting with replay below a tenth of the tolerance changes no decision
RESOLUTION = 0.001  # the recommended fraction is rounded up to this (a thousandth of the tokens)


def point_from_eval(fraction: float, report: EvalReport, domain: str, location: str) -> SweepPoint:
    """The sweep point of the proxy run with replay ``fraction`` whose evaluation is ``report`` (read from
    ``location``): the domain's relative gain and the replay subsets' mean relative forgetting of held-out loss.
    Every subset other than ``domain`` counts as replay (at fraction 0 too: the report still evaluates them)."""
    if not 0.0 <= fraction <= 1.0:
        raise UserError(f"{location}: replay fraction {fraction} is not between 0 and 1")
    losses = {row.name: row for row in report.rows if row.kind == "loss" and row.metric == LOSS_METRIC}
    missing = [s.name for s in report.subsets if s.name not in losses]
    if missing:
        raise UserError(f"{location}: no held-out loss ({LOSS_METRIC}) of the subsets {', '.join(missing)}: an "
                        "incomplete evaluation report")
    if domain not in losses:
        raise UserError(f"{location}: no held-out loss ({LOSS_METRIC}) of the domain {domain!r} (subsets with "
                        f"one: {', '.join(losses) or 'none'}); was this proxy run trained on that corpus?")
    changes = {}
    for name, row in losses.items():
        base, trained = row.base.value, row.trained.value
        if not (math.isfinite(base) and math.isfinite(trained)) or base <= 0:
            raise UserError(f"{location}: the held-out loss of {name!r} is not a positive number (base {base}, "
                            f"trained {trained})")
        changes[name] = SubsetLoss(name=name, base=base, trained=trained, relative_change=(trained - base) / base)
    replay = [change for name, change in changes.items() if name != domain]
    if not replay:
        raise UserError(f"{location}: no replay subset besides the domain {domain!r}: forgetting is measured on "
                        "the replay subsets' held-out loss, evaluate at least one")
    icl = [change for change in report.cpt.forgetting if change.metric != LOSS_METRIC]  # the replay's ICL tasks
    return SweepPoint(fraction=fraction, domain_gain=-changes[domain].relative_change,
                      forgetting=sum(c.relative_change for c in replay) / len(replay), domain=changes[domain],
                      replay=replay, eval_report=location, icl=icl)


def isotonic(x: np.ndarray, y: np.ndarray, increasing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares monotone fit (pool adjacent violators): the distinct fractions of ``x`` and the fitted
    value at each (points sharing a fraction pooled first), non-increasing unless ``increasing``."""
    xs = np.unique(x)
    sign = 1.0 if increasing else -1.0
    blocks: list[list[float]] = []  # [mean of sign·y, weight, distinct fractions pooled]
    for value in xs:
        members = y[x == value]
        blocks.append([sign * float(members.mean()), float(len(members)), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (v2, w2, c2), (v1, w1, c1) = blocks.pop(), blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return xs, np.array([sign * v for v, _, count in blocks for _ in range(count)])


def _exponential(x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], np.ndarray] | None:
    """c + k·exp(-t·(x - f0)), k >= 0, t > 0: a grid over t (linear least squares for c, k at each), polished
    with scipy's curve_fit; None with fewer than 3 distinct fractions."""
    xs = np.unique(x)
    if len(xs) < EXPONENTIAL_MIN_POINTS:
        return None
    f0, span = float(xs[0]), float(xs[-1] - xs[0])
    lowest, highest = 0.05 / span, 500.0 / span  # t·span: from nearly a straight line to a step after f0
    best = None
    for t in np.geomspace(lowest, highest, 240):
        e = np.exp(-t * (x - f0))
        (c, k), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(e), e]), y, rcond=None)
        c, k = (float(c), float(k)) if k >= 0 else (float(y.mean()), 0.0)
        sse = float(((c + k * e - y) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, c, k, float(t))
    sse, c, k, t = best

    def curve(f, c, k, t):
        return c + k * np.exp(-t * (f - f0))

    if k > 0:
        from scipy.optimize import OptimizeWarning, curve_fit

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)  # no covariance with 3 points: not used
                found, _ = curve_fit(curve, x, y, p0=(c, k, t), bounds=([-np.inf, 0.0, lowest],
                                                                      [np.inf, np.inf, highest]))
            if ((curve(x, *found) - y) ** 2).sum() <= sse:
                c, k, t = (float(v) for v in found)
        except (RuntimeError, ValueError):  # no convergence: the grid's best stands
            pass
    return {"c": c, "k": k, "t": t, "f0": f0}, curve(x, c, k, t)


def _r2(y: np.ndarray, fitted: np.ndarray) -> float | None:
    sst = float(((y - y.mean()) ** 2).sum())
    return None if sst <= 1e-24 else 1.0 - float(((y - fitted) ** 2).sum()) / sst


def _arrays(points: list[SweepPoint]) -> tuple[np.ndarray, np.ndarray]:
    if not points:
        raise UserError("no sweep points: the sweep needs at least one evaluated proxy run")
    return np.array([p.fraction for p in points]), np.array([p.forgetting for p in points])


def fit(points: list[SweepPoint]) -> SweepFit:
    """Forgetting against the replay fraction: the exponential form where it fits, else the isotonic
    piecewise-linear one (the rule: the module's docstring)."""
    x, y = _arrays(points)
    xs, iso = isotonic(x, y)
    monotone = bool(np.all(np.diff([y[x == v].mean() for v in xs]) <= 0))
    exp = _exponential(x, y)
    exp_r2 = _r2(y, exp[1]) if exp else None
    if exp and exp_r2 is not None and exp_r2 >= EXPONENTIAL_MIN_R2:
        form, (parameters, predicted) = "exponential", exp
        p = parameters
        knots = [(float(v), p["c"] + p["k"] * math.exp(-p["t"] * (v - p["f0"]))) for v in xs]
        why = f"the exponential form fits (R² {exp_r2:.3f} >= {EXPONENTIAL_MIN_R2})"
    else:
        form, parameters, knots = "piecewise-linear", {}, [(float(a), float(b)) for a, b in zip(xs, iso)]
        predicted = np.interp(x, xs, iso)
        why = (f"fewer than {EXPONENTIAL_MIN_POINTS} distinct fractions" if exp is None
               else "forgetting does not vary" if exp_r2 is None
               else f"the exponential form does not fit (R² {exp_r2:.3f} < {EXPONENTIAL_MIN_R2})")
        why += ": the monotone (non-increasing) fit through the points, joined by straight lines"
    residual = np.asarray(predicted) - y
    return SweepFit(form=form, parameters=parameters, knots=knots, predicted=[float(v) for v in predicted],
                    r2=_r2(y, np.asarray(predicted)), rmse=float(np.sqrt((residual ** 2).mean())),
                    exponential_r2=exp_r2, monotone=monotone, why=why)


def predict(fitted: SweepFit, fraction: float) -> float:
    """The fitted forgetting at ``fraction`` (piecewise-linear: constant beyond the swept range)."""
    if fitted.form == "exponential":
        p = fitted.parameters
        return p["c"] + p["k"] * math.exp(-p["t"] * (fraction - p["f0"]))
    xs, ys = zip(*fitted.knots)
    return float(np.interp(fraction, xs, ys))


def _reach(fitted: SweepFit, tolerance: float) -> float:
    """Where the exponential meets ``tolerance`` (its floor c below it, k > 0)."""
    p = fitted.parameters
    return p["f0"] + math.log(p["k"] / (tolerance - p["c"])) / p["t"]


def _crossing(fitted: SweepFit, tolerance: float) -> float | None:
    """The smallest fraction of the swept range whose fitted forgetting is at most ``tolerance`` (the fit is
    non-increasing), unrounded; None when even the largest swept fraction's exceeds it."""
    xs, ys = zip(*fitted.knots)
    if predict(fitted, xs[0]) <= tolerance:
        return xs[0]
    if predict(fitted, xs[-1]) > tolerance:
        return None
    if fitted.form == "exponential":
        return min(xs[-1], max(xs[0], _reach(fitted, tolerance)))
    i = next(i for i, v in enumerate(ys) if v <= tolerance)  # i >= 1: the first knot exceeds the tolerance
    return xs[i - 1] + (ys[i - 1] - tolerance) / (ys[i - 1] - ys[i]) * (xs[i] - xs[i - 1])


def _beyond(fitted: SweepFit, tolerance: float) -> str:
    """What to sweep next when no swept fraction meets the tolerance."""
    largest = fitted.knots[-1][0]
    if fitted.form == "exponential" and fitted.parameters["c"] < tolerance and fitted.parameters["k"] > 0:
        reach = _reach(fitted, tolerance)
        if reach <= 1.0:
            return (f"the fitted curve reaches it near {reach:.2f}: sweep larger fractions, from {largest:g} up to "
                    f"{min(1.0, 1.5 * reach):.2f}, or accept a larger tolerance")
    return (f"sweep larger fractions than {largest:g} (the fit does not say where forgetting would be small "
            "enough), or accept a larger tolerance")


def _trend(x: np.ndarray, y: np.ndarray, fitted: SweepFit) -> dict[str, float]:
    """What the monotone fits say about the points: the noise no monotone curve explains (``sigma``), the best
    adjusted R², the residual sums of squares of the non-increasing and non-decreasing fits, and their rises."""
    n, sst = len(y), float(((y - y.mean()) ** 2).sum())
    found = {}
    for name, increasing in (("dec", False), ("inc", True)):
        xs, levels = isotonic(x, y, increasing)
        found[name] = float(((np.interp(x, xs, levels) - y) ** 2).sum())
        found[f"{name}_df"] = len(np.unique(levels))
        found[f"{name}_rise"] = float(levels[-1] - levels[0])
    best = "inc" if found["inc"] < found["dec"] else "dec"
    dof = n - found[f"{best}_df"]
    sigma = math.sqrt(found[best] / dof) if dof > 0 else 0.0
    adjusted = [1.0 - sigma ** 2 / (sst / (n - 1)) if dof > 0 and sst > 0 else 1.0]
    if fitted.exponential_r2 is not None and n > EXPONENTIAL_MIN_POINTS:
        adjusted.append(1.0 - (1.0 - fitted.exponential_r2) * (n - 1) / (n - EXPONENTIAL_MIN_POINTS))
    return {**found, "sigma": sigma, "adjusted_r2": max(adjusted)}


def recommend(points: list[SweepPoint], tolerance: float = DEFAULT_FORGETTING_TOLERANCE,
              fitted: SweepFit | None = None) -> SweepRecommendation:
    """The smallest replay fraction of the swept range whose fitted forgetting is at most ``tolerance``, or why
    there is none (the rules: the module's docstring). ``fitted``: ``fit(points)``, when already made."""
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise UserError(f"forgetting tolerance {tolerance} is not a number >= 0")
    x, y = _arrays(points)
    fitted = fitted or fit(points)
    xs = np.unique(x)
    mean_gain = np.array([np.mean([p.domain_gain for p in points if p.fraction == v]) for v in xs])
    gain_ok = bool(np.all(np.diff(mean_gain) <= 0))
    none = {"fraction": None, "predicted_forgetting": None, "expected_gain": None, "tolerance": tolerance,
            "gain_non_increasing": gain_ok}
    trend = _trend(x, y, fitted)
    if trend["adjusted_r2"] < MIN_TREND_R2 and trend["sigma"] > NOISE_TO_TOLERANCE * tolerance:
        return SweepRecommendation(status="too_noisy", **none, reason=(
            f"too noisy to recommend: no monotone curve explains the points (best adjusted R² "
            f"{trend['adjusted_r2']:.2f} < {MIN_TREND_R2}; the noise left, {trend['sigma']:.4f}, is over "
            f"{NOISE_TO_TOLERANCE:.0%} of the tolerance {tolerance:.4f}); train longer proxy runs, evaluate on more "
            "held-out tokens, or repeat fractions"))
    if trend["inc"] < trend["dec"] and trend["inc_rise"] > MATERIAL_RISE * tolerance:
        seen = ", ".join(f"{x[i]:g}: {y[i]:+.4f}" for i in np.argsort(x, kind="stable"))
        return SweepRecommendation(status="not_monotone", **none, reason=(
            f"not monotone: forgetting rises with more replay (by {trend['inc_rise']:.4f} across the sweep; "
            f"fraction: forgetting {seen}), the opposite of what replay does; check that the replay subsets "
            "evaluated are the ones trained on and that the proxy runs differ only in the fraction"))
    crossing = _crossing(fitted, tolerance)
    caveat = "" if gain_ok else (" Note: the measured domain gain does not fall steadily with more replay (noise "
                                 "in the gain), so the smallest fraction is the most gain only on the trend.")
    if crossing is None:
        return SweepRecommendation(status="none_within_tolerance", **none, reason=(
            f"no fraction in the sweep ({xs[0]:g} to {xs[-1]:g}) keeps forgetting within {tolerance:.2%}: the "
            f"fit's forgetting at {xs[-1]:g} is {predict(fitted, xs[-1]):.2%}; {_beyond(fitted, tolerance)}."
            + caveat))
    fraction = round(min(float(xs[-1]), math.ceil(round(crossing / RESOLUTION, 6)) * RESOLUTION), 6)
    predicted, gain = predict(fitted, fraction), float(np.interp(fraction, xs, mean_gain))
    where = ("the smallest fraction swept" if crossing == xs[0] else
             f"where the {fitted.form} fit of forgetting meets the tolerance (rounded up to {RESOLUTION:g})")
    return SweepRecommendation(
        status="recommended", fraction=fraction, predicted_forgetting=predicted, expected_gain=gain,
        tolerance=tolerance, gain_non_increasing=gain_ok, reason=(
            f"replay fraction {fraction:g}, {where}: predicted forgetting {predicted:.2%} <= tolerance "
            f"{tolerance:.2%}, domain gain about {gain:.2%}, the most gain the tolerance allows." + caveat))


def sweep_report(points: list[SweepPoint], domain: str, tolerance: float = DEFAULT_FORGETTING_TOLERANCE,
                 proxy_model: str | None = None, proxy_tokens: int | None = None,
                 corpus_fingerprint: str | None = None, mix: str | None = None,
                 tokenizer: str | None = None) -> SweepReport:
    """The sweep's report: the points in increasing fraction, their fit and the recommendation; the identity
    fields (proxy, corpus fingerprint, mix, tokenizer) are the DAG's to fill."""
    points = sorted(points, key=lambda p: p.fraction)
    fitted = fit(points)
    return SweepReport(points=points, fit=fitted, recommendation=recommend(points, tolerance, fitted),
                       tolerance=tolerance, tolerance_meaning=TOLERANCE_MEANING.format(tolerance=tolerance),
                       domain=domain, proxy_model=proxy_model, proxy_tokens=proxy_tokens,
                       corpus_fingerprint=corpus_fingerprint, mix=mix, tokenizer=tokenizer)
