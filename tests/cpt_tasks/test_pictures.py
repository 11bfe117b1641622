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
