"""The evaluation's gained/forgotten summary: a domain's own held-out ICL task is a gain, the replay data's are what
was kept or forgotten, and a run without a domain has nothing to gain and says so (its replay data's change reads
plainly, not as forgotten) — in the CLI's text, the Markdown and the picture."""

import re
from types import SimpleNamespace

import pytest

from cpt_tasks.documents.evaluate_docs import CptSummary, EvalReport, EvalSubset, EvalWorkerOutcome, MetricValue
from cpt_tasks.evaluate.eval_report import compare, cpt_summary, eval_figure, format_summary, render_markdown, \
    task_component

LOSS, ACC = "LanguageCrossEntropy", "InContextLearningLMAccuracy"


def outcome(values: dict[str, tuple[float, float]]) -> EvalWorkerOutcome:
    """Both models' metrics: key -> (base, trained)."""
    return EvalWorkerOutcome(metrics={role: {k: MetricValue(value=v[i], n=10) for k, v in values.items()}
                                      for i, role in enumerate(("base", "trained"))}, seconds={})


def report_of(values: dict[str, tuple[float, float]], roles: dict[str, str], cpt: CptSummary | None = None):
    rows = compare(outcome(values))
    subsets = [EvalSubset(name=n, val_split=f"/d/{n}/val", fingerprint="f" * 64, val_tokens=256, role=r)
               for n, r in roles.items()]
    return EvalReport.model_construct(
        rows=rows, subsets=subsets, cpt=cpt or cpt_summary(rows, roles), run_name="0123456789abcdef-manual__x",
        plan_fingerprint="0" * 64, base_model=SimpleNamespace(source="base", revision=None), hf_export="/r/hf",
        tasks=SimpleNamespace(source="default", measures="next words"), settings={}, metrics_explained={})


def section(text: str, start: str) -> list[str]:
    """The summary's lines from the one starting with ``start`` to the end."""
    lines = text.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith(start)):]


def groups(lines: list[str]) -> dict[str, list[str]]:
    """Summary table lines -> {group title: [the names under it]} (a title stands on its group's first line)."""
    found: dict[str, list[str]] = {}
    title = None
    for line in lines[2:]:  # heading, column header
        if not line.strip():
            break
        head = re.match(r"^(\S.*?)\s{2,}(\S+)", line)
        if head:
            title = head.group(1)
            found[title] = [head.group(2)]
        else:
            found[title].append(line.split()[0])
    return found


DOMAIN_RUN = {f"metrics/eval/python-code/{LOSS}": (6.0, 4.75), f"metrics/eval/wiki/{LOSS}": (5.0, 5.5),
              f"metrics/heldout_python-code/0-shot/{ACC}": (0.1, 0.3),
              f"metrics/heldout_wiki/0-shot/{ACC}": (0.2, 0.1), f"metrics/arc/0-shot/{ACC}": (0.5, 0.5)}
DOMAIN_ROLES = {"wiki": "replay", "python-code": "domain"}


def test_the_domains_own_icl_task_is_gained_the_replays_are_forgotten():
    report = report_of(DOMAIN_RUN, DOMAIN_ROLES)
    assert [(c.name, c.verdict) for c in report.cpt.gain] == [("python-code", "better"),
                                                              ("heldout_python-code/0-shot", "better")]
    assert [c.name for c in report.cpt.forgetting] == ["wiki", "heldout_wiki/0-shot", "arc/0-shot"]
    text = format_summary(report)
    lines = section(text, "Gained and forgotten")
    assert groups(lines) == {"gained": ["python-code", "heldout_python-code/0-shot"],
                             "forgotten": ["wiki", "heldout_wiki/0-shot", "arc/0-shot"]}
    assert "Nothing to gain" not in text
    gained = next(line for line in lines if "heldout_python-code/0-shot" in line)
    assert gained.split()[-4:] == ["0.3000", "+0.2000", "score", "better"]
    md = render_markdown(report)
    assert "## Gained and forgotten" in md and "Nothing to gain" not in md
    assert "| gained | python-code |" in md and "|  | heldout_python-code/0-shot |" in md
    assert "| forgotten | wiki |" in md


def test_without_a_domain_there_is_nothing_to_gain_and_the_replay_data_reads_plainly():
    values = {f"metrics/eval/wiki/{LOSS}": (3.21, 3.05), f"metrics/eval/math/{LOSS}": (4.0, 4.1),
              f"metrics/heldout_wiki/0-shot/{ACC}": (0.1, 0.2), f"metrics/arc/0-shot/{ACC}": (0.5, 0.4)}
    report = report_of(values, {"wiki": "replay", "math": "replay"})
    assert report.cpt.gain == [] and report.cpt.domains == [] and not report.cpt.has_domain
    text = format_summary(report)
    assert "forgotten" not in text.lower() and "gained" not in text.lower()
    lines = section(text, "Nothing to gain: no domain corpus in this run")
    assert groups(lines) == {"replay data": ["wiki", "math", "heldout_wiki/0-shot"], "other tasks": ["arc/0-shot"]}
    wiki = next(line for line in lines if " wiki " in line)
    assert wiki.split()[-5:] == ["3.2100", "3.0500", "-0.1600", "loss", "better"]
    md = render_markdown(report)
    assert "Nothing to gain: no domain corpus in this run" in md and "| replay data | wiki |" in md
    assert "forgotten" not in md.lower().split("## every metric")[0]


def test_a_report_from_before_the_fix_is_shown_with_the_domains_task_gained():
    """An eval-report.json written before ``domains`` existed counted every ICL task as forgotten; a retried
    evaluation returns it unchanged (already_complete), and what is shown of it is classified again."""
    old = report_of(DOMAIN_RUN, DOMAIN_ROLES)
    stale = CptSummary(gain=old.cpt.gain[:1], forgetting=old.cpt.forgetting + old.cpt.gain[1:])
    report = report_of(DOMAIN_RUN, DOMAIN_ROLES, cpt=CptSummary.model_validate(stale.model_dump(exclude={"domains"})))
    assert report.cpt.domains is None
    assert groups(section(format_summary(report), "Gained and forgotten"))["gained"] == [
        "python-code", "heldout_python-code/0-shot"]


@pytest.mark.parametrize("name, component", [("heldout_python-code/0-shot", "python-code"),
                                             ("heldout_wiki/0-shot", "wiki"), ("heldout_wiki2/0-shot", None),
                                             ("arc/0-shot", None), ("heldout_/0-shot", None)])
def test_an_icl_task_belongs_to_the_component_it_was_made_from(name, component):
    assert task_component(name, ["python-code", "wiki"]) == component


def test_the_picture_puts_the_domains_task_with_the_gains_and_says_replay_without_a_domain():
    import matplotlib.pyplot as plt

    fig = eval_figure(report_of(DOMAIN_RUN, DOMAIN_ROLES))
    fig.canvas.draw()
    panels = {ax.get_title().replace("\n", " "): [t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes}
    places = {ax.get_title().split(" ")[0] + ("loss" if "loss" in ax.get_title() else "icl"):
              (round(ax.get_position().x0, 2), round(ax.get_position().y0, 2)) for ax in fig.axes}
    plt.close(fig)
    # gained on the left, kept on the right; losses above ICL tasks (a 2 x 2 grid, not one long row)
    assert places["Gained:loss"][0] == places["Gained:icl"][0] < places["Forgotten?loss"][0], places
    assert places["Gained:loss"][1] == places["Forgotten?loss"][1] > places["Gained:icl"][1], places
    for ax in fig.axes:
        assert not ax.yaxis.get_offset_text().get_text(), ax.get_title()  # no "1e-10" over a panel of zeros
    assert panels == {"Gained: your corpus's held-out loss (lower is better)": ["python-code"],
                      "Gained: ICL tasks on your corpus (higher is better)": ["heldout_python-code"],
                      "Forgotten? replay loss (lower is better)": ["wiki"],
                      "Forgotten? other ICL tasks (higher is better)": ["heldout_wiki", "arc"]}
    values = {f"metrics/eval/wiki/{LOSS}": (3.21, 3.05), f"metrics/heldout_wiki/0-shot/{ACC}": (0.1, 0.2)}
    fig = eval_figure(report_of(values, {"wiki": "replay"}))
    titles = [ax.get_title().replace("\n", " ") for ax in fig.axes]
    plt.close(fig)
    assert titles == ["Replay data: held-out loss (lower is better)", "ICL tasks (higher is better)"]
    assert not any("Forgotten" in t or "Gained" in t for t in titles)
