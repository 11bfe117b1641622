"""The pictures people read: short titles, whole steps, labelled axes, a legend for every line or colour, and
no text drawn over other text (long component names included)."""

import itertools

import pytest

from cpt_tasks.train.run_record import loss_figure, loss_title

RUN_NAME = "0123456789abcdef-manual__2026-12-02T15-35-04.123456-00-00-1a2b3c4d"


def test_the_loss_picture_has_a_short_title_whole_steps_and_labels():
    history = [{"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.5},
               {"step": 3, "loss": 4.2, "eval": {"wiki": 4.4, "math": 4.6}}]
    title = loss_title(RUN_NAME)
    assert title.startswith("Training loss · plan 01234567 · manual__2026") and len(title) <= 64, title
    fig = loss_figure(history, title, start_step=2)
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_title() == title
    assert all(float(t).is_integer() for t in ax.get_xticks()), ax.get_xticks()
    assert ax.get_xlabel() == "optimizer step" and "loss" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "held-out math", "held-out wiki",
                                                                    "resumed at step 2"]
    assert min(t.get_fontsize() for t in ax.get_legend().get_texts()) >= 8


def row(kind, name, metric, base, trained, verdict):
    from cpt_tasks.documents.evaluate_docs import EvalRow, MetricValue

    return EvalRow(kind=kind, name=name, metric=metric, key=f"metrics/{name}/{metric}",
                   base=MetricValue(value=base, n=10),
                   trained=MetricValue(value=trained, n=10), delta=trained - base, verdict=verdict,
                   lower_is_better=kind == "loss")


def test_the_evaluation_picture_labels_axes_explains_colours_and_leads_with_the_gain():
    from cpt_tasks.documents.evaluate_docs import CptChange, CptSummary, EvalReport
    from cpt_tasks.evaluate.eval_report import eval_figure

    rows = [row("loss", "python-code", "LanguageCrossEntropy", 11.8, 11.1, "better"),
            row("loss", "wiki", "LanguageCrossEntropy", 10.0, 10.2, "worse"),
            row("icl", "heldout_wiki/0-shot", "InContextLearningLMAccuracy", 0.1, 0.1, "same")]
    gain = CptChange(name="python-code", metric="LanguageCrossEntropy", base=11.8, trained=11.1, delta=-0.7,
                     lower_is_better=True, verdict="better")
    report = EvalReport.model_construct(rows=rows, run_name=RUN_NAME, plan_fingerprint="0123456789abcdef" * 4,
                                        cpt=CptSummary(gain=[gain], forgetting=[]))
    fig = eval_figure(report)
    fig.canvas.draw()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("Gained") and titles[1].startswith("Forgotten") and "ICL" in titles[2]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["better after training", "worse after training",
                                                                  "no change"]
    labels = [t for ax in fig.axes for t in ax.texts]  # base → trained on every bar, readable
    assert len(labels) == 3 and min(t.get_fontsize() for t in labels) >= 8
    assert fig._suptitle.get_text() == "Did continual pretraining help? · plan 01234567 · manual__2026-12-02T15-35-04…"


def drawn_texts(fig, rotated: bool = True) -> list:
    """Every piece of text the figure draws (titles, labels, tick labels in view, annotations, legends), with its
    bounding box in pixels; ``rotated=False`` leaves rotated text out (its box is not its outline)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hidden = set()
    for ax in fig.axes:  # tick labels outside the axis's view are not drawn
        for axis, (low, high) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
            hidden |= {id(t.label1) for t in axis.get_major_ticks() if not low <= t.get_loc() <= high}
    found = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden
             and (rotated or t.get_rotation() == 0)]
    return [(t, t.get_window_extent(renderer)) for t in found]


def overlapping(texts: list) -> list[tuple[str, str]]:
    return [(a.get_text(), b.get_text()) for (a, box_a), (b, box_b) in itertools.combinations(texts, 2)
            if box_a.overlaps(box_b)]


def outside(fig, texts: list) -> list[str]:
    """Texts cut off at the figure's edge."""
    width, height = fig.canvas.get_width_height()
    return [t.get_text() for t, box in texts if box.x0 < 0 or box.y0 < 0 or box.x1 > width or box.y1 > height]


def verify_report(names: list[str], repeated: str | None = None, statuses: dict[str, str] | None = None):
    """A verification report of ``names`` (equal shares; ``repeated`` the domain, seen 1.5 epochs)."""
    from cpt_tasks.documents.plan_docs import PlannedTokenizer, PlanRef
    from cpt_tasks.documents.verify_docs import SubsetReport, VerifyReport

    concat, rows = 128, 100
    subsets = []
    for number, name in enumerate(names):
        unique = (rows + 10 * number) * concat
        again = name == repeated
        subsets.append(SubsetReport(
            name=name, status=(statuses or {}).get(name, "ok"), fingerprint="f" * 64, out_root=f"/d/{name}",
            manifest=f"/d/{name}/manifest.json", proportion=1 / len(names), planned_train_tokens=unique,
            train_tokens=unique, val_tokens=concat, share=1 / len(names), documents={"train": 9, "val": 1},
            exhausted=False, checks=[], role="domain" if again else "replay", epochs=1.5 if again else 1.0,
            trained_tokens=int(unique * 1.5) if again else None,
            planned_trained_tokens=int(unique * 1.5) if again else None))
    total = sum(s.trained for s in subsets)
    return VerifyReport(ok=True, plan=PlanRef(path="/p.json", sha256="0" * 64, fingerprint="1" * 64),
                        mix="dolmino-mix-1124", concat_tokens=concat,
                        tokenizer=PlannedTokenizer(name="t", revision=None, sha256="2" * 64), total_tokens=total,
                        realized_train_tokens=sum(s.train_tokens for s in subsets), subsets=subsets,
                        trained_tokens=total if repeated else None, created_at="now", code_version="0")


LONG = "debian-changelog-entries-2024"
VERY_LONG = "a-component-with-a-name-far-longer-than-any-label-could-hold-on-two-lines-of-a-chart"
DOLMINO = ["dclm", "flan", "pes2o", "wiki", "stackexchange", "math"]


@pytest.mark.parametrize("names, repeated, statuses", [
    (DOLMINO + [LONG], LONG, None),
    (["wiki", LONG, "stackexchange-python-answers-2024-q4", VERY_LONG], LONG, {"wiki": "short", VERY_LONG: "failed"}),
    ([LONG], LONG, None),
    (["stackexchange", "debian-changelog-entries-2024-a", "debian-changelog-entries-2024-b"], None, None)])
def test_the_mix_picture_keeps_long_names_readable_without_overlap(names, repeated, statuses, tmp_path):
    import matplotlib.pyplot as plt

    from cpt_tasks.verify.picture import mix_figure, render_png

    report = verify_report(names, repeated, statuses)
    fig = mix_figure(report)
    texts = drawn_texts(fig)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    plt.close(fig)
    assert overlapping(texts) == [] and outside(fig, texts) == []
    assert len(labels) == len(names)
    for name, label in zip(names, labels):  # each name whole (perhaps wrapped), or cut with an ellipsis
        lines = label.split("\n")[:-1] if name == repeated else label.split("\n")
        shown = "".join(lines)
        assert shown == name or (shown.endswith("…") and name.startswith(shown[:-1])), (name, label)
        assert len(lines) <= 2 and max(len(line) for line in lines) <= 32, label
    assert labels[names.index(VERY_LONG)].endswith("…") if VERY_LONG in names else True
    if repeated:
        assert labels[names.index(repeated)].endswith("domain · ×1.50 epochs")
    shares = [t.get_text() for t, _ in texts if "(plan " in t.get_text()]
    assert len(shares) == len(names)
    (tmp_path / "verify-mix.png").write_bytes(render_png(report))


def test_the_evaluation_picture_draws_no_text_over_other_text():
    from cpt_tasks.documents.evaluate_docs import CptSummary, EvalReport
    from cpt_tasks.evaluate.eval_report import cpt_summary, eval_figure

    rows = [row("loss", LONG, "LanguageCrossEntropy", 11.8, 11.1, "better"),
            row("loss", "wiki", "LanguageCrossEntropy", 10.0, 10.2, "worse"),
            row("icl", f"heldout_{LONG}/0-shot", "InContextLearningLMAccuracy", 0.1, 0.3, "better"),
            row("icl", "heldout_wiki/0-shot", "InContextLearningLMAccuracy", 0.2, 0.2, "same"),
            row("icl", "arc_easy/0-shot", "InContextLearningLMAccuracy", 0.5, 0.4, "worse")]
    for roles in ({LONG: "domain", "wiki": "replay"}, {LONG: "replay", "wiki": "replay"}):
        report = EvalReport.model_construct(rows=rows, run_name=RUN_NAME, plan_fingerprint="0" * 64,
                                            cpt=cpt_summary(rows, roles))
        assert isinstance(report.cpt, CptSummary)
        fig = eval_figure(report)
        texts = drawn_texts(fig, rotated=False)  # titles, axis labels, bar labels, legend
        assert overlapping(texts) == [] and outside(fig, drawn_texts(fig)) == [], roles
