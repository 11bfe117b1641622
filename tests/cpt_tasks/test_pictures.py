"""The pictures people read: short titles, whole steps, labelled axes, a legend for every line or colour."""

from cpt_tasks.train.manifest import loss_figure, loss_title

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
    from cpt_tasks.documents.evaluate import EvalRow, MetricValue

    return EvalRow(kind=kind, name=name, metric=metric, key=f"metrics/{name}/{metric}",
                   base=MetricValue(value=base, n=10),
                   trained=MetricValue(value=trained, n=10), delta=trained - base, verdict=verdict,
                   lower_is_better=kind == "loss")


def test_the_evaluation_picture_labels_axes_explains_colours_and_leads_with_the_gain():
    from cpt_tasks.documents.evaluate import CptChange, CptSummary, EvalReport
    from cpt_tasks.evaluate.report import eval_figure

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
    assert titles[0].startswith("Gained") and titles[1].startswith("Forgotten") and titles[2].startswith("ICL")
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["better after training", "worse after training",
                                                                  "no change"]
    labels = [t for ax in fig.axes for t in ax.texts]  # base → trained on every bar, readable
    assert len(labels) == 3 and min(t.get_fontsize() for t in labels) >= 8
    assert fig._suptitle.get_text() == "Did continual pretraining help? · plan 01234567 · manual__2026-12-02T15-35-04…"
