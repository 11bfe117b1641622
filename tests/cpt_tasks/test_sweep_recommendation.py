"""The replay sweep's recommendation (issue 27) on synthetic curves with known answers: a clean exponential
forgetting curve is recommended where it meets the tolerance (to the 0.001 resolution the fraction is rounded up
to), small noise moves it a little, dominating noise, forgetting that rises with replay and a sweep that never
reaches the tolerance are each said plainly; fewer than 3 fractions fall back to the piecewise-linear fit. A point
is read from a real evaluation report, and the report round-trips, renders as Markdown and as a PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from cpt_tasks.documents import dump_document, parse_document
from cpt_tasks.documents.evaluate_docs import EvalReport, EvalSubset, EvalTasks, EvalWorkerOutcome, MetricValue
from cpt_tasks.documents.plan_docs import PlannedTokenizer
from cpt_tasks.documents.sweep_docs import SubsetLoss, SweepPoint, SweepReport
from cpt_tasks.documents.train_docs import MlflowRun, ModelSource, ReportRef
from cpt_tasks.errors import UserError
from cpt_tasks.evaluate.eval_report import compare, cpt_summary
from cpt_tasks.sweep.recommendation import (DEFAULT_FORGETTING_TOLERANCE, RESOLUTION, fit, isotonic,
                                            point_from_eval, predict, recommend, sweep_report)
from cpt_tasks.sweep.sweep_render import render_markdown, render_png

FRACTIONS = [0.0, 0.05, 0.1, 0.25, 0.5]  # the default sweep
C, K, T = 0.004, 0.08, 12.0  # forgetting(f) = C + K·exp(-T·f): 8.4% without replay, 0.6% at half replay


def true_forgetting(f):
    return C + K * np.exp(-T * np.asarray(f, dtype=float))


def smallest_meeting(tolerance: float) -> float:
    """The analytic answer: the smallest f in [0, 0.5] with C + K·exp(-T·f) <= tolerance, rounded up to 0.001."""
    exact = max(0.0, math.log(K / (tolerance - C)) / T)
    return math.ceil(round(exact / RESOLUTION, 6)) * RESOLUTION


def points(forgetting, fractions=FRACTIONS, gains=None) -> list[SweepPoint]:
    """Sweep points with these forgetting values (gain falling with replay unless given), each with the held-out
    losses they come from: the domain's 2.0 nats at the start, the replay subset's 3.0."""
    gains = gains if gains is not None else [0.2 * (1 - f) for f in fractions]
    return [SweepPoint(fraction=f, domain_gain=g, forgetting=float(y), domain=subset("code", 2.0, 2.0 * (1 - g)),
                       replay=[subset("wiki", 3.0, 3.0 * (1 + y))], eval_report=f"/runs/f{f:g}/eval/eval-report.json")
            for f, y, g in zip(fractions, forgetting, gains)]


def subset(name: str, base: float, trained: float) -> SubsetLoss:
    return SubsetLoss(name=name, base=base, trained=trained, relative_change=(trained - base) / base)


@pytest.mark.parametrize("tolerance", [0.01, 0.02, 0.05])
def test_a_clean_exponential_curve_is_recommended_where_it_meets_the_tolerance(tolerance):
    pts = points(true_forgetting(FRACTIONS))
    fitted = fit(pts)
    assert fitted.form == "exponential" and fitted.monotone and fitted.r2 == pytest.approx(1.0, abs=1e-9)
    assert [fitted.parameters[k] for k in "ckt"] == pytest.approx([C, K, T], rel=1e-4)
    rec = recommend(pts, tolerance)
    expected = smallest_meeting(tolerance)  # 0.216, 0.135, 0.047
    assert 0 < expected < 0.5 and rec.status == "recommended" and rec.fraction == pytest.approx(expected, abs=1e-9)
    # the smallest: the fit is within the tolerance there and not one resolution step before it
    assert predict(fitted, rec.fraction) <= tolerance < predict(fitted, rec.fraction - RESOLUTION)
    assert rec.predicted_forgetting == pytest.approx(true_forgetting(rec.fraction), rel=1e-4)
    assert rec.expected_gain == pytest.approx(0.2 * (1 - rec.fraction)) and rec.gain_non_increasing


def test_a_tolerance_the_smallest_fraction_already_meets_recommends_it():
    rec = recommend(points(true_forgetting(FRACTIONS)), 0.1)  # 8.4% at no replay
    assert (rec.status, rec.fraction) == ("recommended", 0.0) and "smallest fraction swept" in rec.reason


def test_an_s_shaped_curve_falls_back_to_piecewise_linear_and_crosses_between_the_knots():
    forgetting = [0.06, 0.06, 0.059, 0.01, 0.009]  # a step between 0.1 and 0.25: no exponential's shape
    fitted = fit(points(forgetting))
    assert fitted.form == "piecewise-linear" and fitted.exponential_r2 < 0.9 and fitted.parameters == {}
    assert fitted.knots == [(f, y) for f, y in zip(FRACTIONS, forgetting)]  # already monotone: through the points
    exact = 0.1 + (0.059 - 0.02) / (0.059 - 0.01) * 0.15  # linear between (0.1, 0.059) and (0.25, 0.01)
    rec = recommend(points(forgetting), 0.02)
    assert rec.fraction == pytest.approx(math.ceil(exact / RESOLUTION) * RESOLUTION) == pytest.approx(0.22)


def test_small_noise_still_recommends_near_the_true_fraction():
    spread = float(true_forgetting(0) - true_forgetting(0.5))
    rng = np.random.default_rng(7)
    found = []
    for _ in range(20):
        rec = recommend(points(true_forgetting(FRACTIONS) + rng.normal(0, 0.05 * spread, 5)), 0.02)
        assert rec.status == "recommended", rec.reason
        found.append(rec.fraction)
    assert max(abs(f - smallest_meeting(0.02)) for f in found) < 0.03, found


def test_dominating_noise_is_too_noisy_to_recommend():
    forgetting = [0.03, 0.06, 0.01, 0.05, 0.02]  # zigzag: no monotone curve explains it
    rec = recommend(points(forgetting), 0.02)
    assert (rec.status, rec.fraction) == ("too_noisy", None) and "too noisy" in rec.reason
    spread = float(true_forgetting(0) - true_forgetting(0.5))
    rng = np.random.default_rng(11)
    statuses = [recommend(points(true_forgetting(FRACTIONS) + rng.normal(0, 2 * spread, 5)), 0.02).status
                for _ in range(30)]
    assert statuses.count("too_noisy") >= 18, statuses  # noise twice the signal: caught unless ordered by chance


def test_a_flat_curve_whose_noise_is_far_below_the_tolerance_recommends_the_smallest_fraction():
    forgetting = [0.003, 0.0035, 0.0028, 0.0031, 0.0033]  # no trend, but all ~0.3% against a 2% tolerance
    rec = recommend(points(forgetting), 0.02)
    assert (rec.status, rec.fraction) == ("recommended", 0.0), rec.reason


def test_forgetting_that_rises_with_replay_is_not_monotone():
    forgetting = [0.005, 0.01, 0.02, 0.035, 0.05]
    assert not fit(points(forgetting)).monotone
    rec = recommend(points(forgetting), 0.02)
    assert (rec.status, rec.fraction) == ("not_monotone", None)
    assert "rises with more replay" in rec.reason and "0.5: +0.0500" in rec.reason


def test_no_fraction_within_the_tolerance_suggests_larger_fractions():
    floor = points(0.03 + 0.05 * np.exp(-10 * np.array(FRACTIONS)))  # never below 3%
    rec = recommend(floor, 0.02)
    assert (rec.status, rec.fraction) == ("none_within_tolerance", None)
    assert "sweep larger fractions than 0.5" in rec.reason and "larger tolerance" in rec.reason
    reaching = points(0.1 * np.exp(-3 * np.array(FRACTIONS)))  # 2.2% at 0.5; 2% at ln(5)/3 = 0.54
    rec = recommend(reaching, 0.02)
    assert rec.status == "none_within_tolerance" and "reaches it near 0.54" in rec.reason


def test_fewer_than_three_fractions_fit_piecewise_linear():
    two = points([0.04, 0.01], fractions=[0.0, 0.25])
    fitted = fit(two)
    assert fitted.form == "piecewise-linear" and fitted.exponential_r2 is None and "fewer than 3" in fitted.why
    rec = recommend(two, 0.02)
    assert (rec.status, rec.fraction) == ("recommended", pytest.approx(0.167))  # 0.02 / 0.03 · 0.25, rounded up
    one = points([0.01], fractions=[0.1])
    assert recommend(one, 0.02).fraction == 0.1 and recommend(one, 0.005).status == "none_within_tolerance"
    with pytest.raises(UserError, match="no sweep points"):
        recommend([], 0.02)
    with pytest.raises(UserError, match="tolerance"):
        recommend(two, -0.01)


def test_isotonic_pools_adjacent_violators():
    xs, fitted = isotonic(np.array([0.0, 0.1, 0.2, 0.3]), np.array([3.0, 1.0, 2.0, 0.0]))
    assert list(xs) == [0.0, 0.1, 0.2, 0.3] and list(fitted) == [3.0, 1.5, 1.5, 0.0]
    xs, fitted = isotonic(np.array([0.0, 0.0, 0.1]), np.array([1.0, 3.0, 0.0]), increasing=True)
    # the shared fraction's two points average 2, then pool with 0 weighted by their count: (2·2 + 0) / 3
    assert list(xs) == [0.0, 0.1] and list(fitted) == pytest.approx([4 / 3, 4 / 3])


def test_a_gain_that_rises_with_replay_is_said():
    rec = recommend(points(true_forgetting(FRACTIONS), gains=[0.2, 0.22, 0.18, 0.15, 0.1]), 0.02)
    assert rec.status == "recommended" and not rec.gain_non_increasing and "does not fall steadily" in rec.reason


def eval_report(losses: dict[str, tuple[float, float]], roles: dict[str, str]) -> EvalReport:
    """An evaluation report as the evaluate job builds it: rows compared from both models' metrics, with a
    perplexity row per subset and an ICL task beside the losses."""
    metrics = {f"metrics/eval/{name}/LanguageCrossEntropy": pair for name, pair in losses.items()}
    metrics |= {f"metrics/eval/{name}/LanguagePerplexity": tuple(math.exp(v) for v in pair)
                for name, pair in losses.items()}
    metrics["metrics/arc/0-shot/InContextLearningLMAccuracy"] = (0.5, 0.1)
    outcome = EvalWorkerOutcome(metrics={role: {k: MetricValue(value=v[i], n=100) for k, v in metrics.items()}
                                         for i, role in enumerate(("base", "trained"))}, seconds={})
    rows = compare(outcome)
    return EvalReport(
        eval_fingerprint="e" * 64, plan_fingerprint="p" * 64, run_name="run", run_folder="/runs/f0.1",
        run_manifest=ReportRef(location="/runs/f0.1/run-manifest.json", sha256="r" * 64), checkpoint=None,
        hf_export="/runs/f0.1/hf", base_model=ModelSource(source="tiny"),
        tokenizer=PlannedTokenizer(name="small", revision=None, sha256="t" * 64), concat_tokens=256,
        subsets=[EvalSubset(name=n, val_split=f"/d/{n}/val", fingerprint="f" * 64, val_tokens=256, role=r)
                 for n, r in roles.items()],
        tasks=EvalTasks(source="none", sha256=None, task_list=None, tasks=[], measures="none"), settings={},
        rows=rows, cpt=cpt_summary(rows, roles), metrics_explained={}, files={}, mlflow=MlflowRun(status="off"),
        code_version={}, seconds={}, created_at="2026-01-01T00:00:00Z")


LOSSES = {"code": (2.0, 1.5), "wiki": (3.0, 3.3), "math": (4.0, 4.0)}
ROLES = {"code": "domain", "wiki": "replay", "math": "replay"}


@pytest.mark.parametrize("fraction", [0.0, 0.1])
def test_a_point_is_read_from_an_evaluation_report(fraction):
    point = point_from_eval(fraction, eval_report(LOSSES, ROLES), "code", "/runs/f/eval-report.json")
    assert point.fraction == fraction and point.eval_report == "/runs/f/eval-report.json"
    assert point.domain_gain == pytest.approx(0.25)  # (2.0 - 1.5) / 2.0
    assert point.forgetting == pytest.approx(0.05)  # mean of (3.3 - 3.0) / 3.0 = 0.1 and (4.0 - 4.0) / 4.0 = 0
    assert (point.domain.name, point.domain.base, point.domain.trained) == ("code", 2.0, 1.5)
    assert [(s.name, s.relative_change) for s in point.replay] == [("wiki", pytest.approx(0.1)), ("math", 0.0)]
    # the arc task (0.5 -> 0.1) is the replay's ICL forgetting: shown beside the fit, never a loss of it
    assert [(c.name, c.base, c.trained, c.verdict) for c in point.icl] == [("arc/0-shot", 0.5, 0.1, "worse")]
    assert point.icl_worse == 1 and "| 1 of 1 |" in render_markdown(
        sweep_report([point, point.model_copy(update={"fraction": 0.5})], "code", 0.1))


def test_a_report_without_the_domain_or_without_replay_is_a_user_error_naming_it():
    report = eval_report({"wiki": (3.0, 3.3)}, {"wiki": "replay"})
    with pytest.raises(UserError, match=r"^/runs/f0.25/eval-report.json: no held-out loss .* domain 'code'"):
        point_from_eval(0.25, report, "code", "/runs/f0.25/eval-report.json")
    alone = eval_report({"code": (2.0, 1.5)}, {"code": "domain"})
    with pytest.raises(UserError, match=r"^/runs/x.json: no replay subset besides the domain 'code'"):
        point_from_eval(0.25, alone, "code", "/runs/x.json")


def test_a_point_whose_numbers_are_not_its_subsets_is_refused():
    good = points([0.03])[0]
    with pytest.raises(ValidationError, match="forgetting 0.05 is not the replay subsets' mean rise"):
        SweepPoint.model_validate({**good.model_dump(), "forgetting": 0.05})
    with pytest.raises(ValidationError, match="domain_gain 0.5 is not the domain's fall"):
        SweepPoint.model_validate({**good.model_dump(), "domain_gain": 0.5})
    with pytest.raises(ValidationError, match="is not \\(trained - base\\) / base"):
        SubsetLoss(name="wiki", base=3.0, trained=3.3, relative_change=0.2)


def test_the_report_round_trips_and_renders():
    pts = points(true_forgetting(FRACTIONS))[::-1]  # in any order: the report sorts them
    report = sweep_report(pts, "code", proxy_model="tiny", proxy_tokens=1_000_000, corpus_fingerprint="c" * 64,
                          mix="dolmino", tokenizer="small")
    assert [p.fraction for p in report.points] == FRACTIONS
    assert report.fit.predicted == pytest.approx(list(true_forgetting(FRACTIONS)), rel=1e-4)
    assert report.tolerance == DEFAULT_FORGETTING_TOLERANCE and "2.00%" in report.tolerance_meaning
    assert report.recommendation.fraction == pytest.approx(smallest_meeting(DEFAULT_FORGETTING_TOLERANCE))
    assert parse_document(dump_document(report), SweepReport, "sweep-report.json") == report
    md = render_markdown(report)
    table = [line for line in md.splitlines() if line.startswith("| ") and "%" in line and "code" not in line]
    assert [line.split("|")[1].split()[0] for line in table[:5]] == [f"{f:g}" for f in FRACTIONS]
    assert "replay fraction **0.135**" in md and report.recommendation.reason in md and "exponential" in md
    assert "| 0.135 ◀ recommended (between the swept fractions) |" in md
    png = render_png(report)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    noisy = sweep_report(points([0.03, 0.06, 0.01, 0.05, 0.02]), "code")
    assert "Too noisy to recommend: no replay fraction" in render_markdown(noisy)
    assert render_png(noisy).startswith(b"\x89PNG")
