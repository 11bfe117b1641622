"""cpt_dolmino's trigger form, used like a person would in headless Chromium against a real Airflow: a mix whose
proportions do not sum to 1 is refused by the form and starts no run; changed Params (a smaller total, two
subsets) trigger a run that plans, converts, verifies, trains on the CPU and evaluates, watched on its page until
it succeeds; the train and evaluate tasks link to their MLflow runs. Screenshots of the form, the finished run's
grid and a task's links go to build/ui/."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .airflow_ui import (copy_run_conf, count_runs, open_run, open_section, open_trigger_form, param_field,
                         read_extra_link, read_form_text, read_json_editor, read_run_details, read_task_states,
                         screenshot_dialog, submit_trigger, type_json, wait_for_run_page, wait_run_finished)
from .airflow_server import ROOT
from .conftest import DAG_ID

pytestmark = [pytest.mark.ui, pytest.mark.slow]
RUN_PAGE = re.compile(r"^http://127\.0\.0\.1:5000/#/experiments/(\d+)/runs/([0-9a-f]{32})$")  # make mlflow's
DEMO_MIX = {"dclm": 0.472, "flan": 0.166, "pes2o": 0.0585, "wiki": 0.0711, "stackexchange": 0.0245, "math": 0.208}


def machine_paths(text: str) -> list[str]:
    """The paths of this checkout, its $CPT_HOME and pytest's temporary folders that ``text`` contains (the
    screenshots in docs/ui/ must show none of them)."""
    home = Path(os.environ.get("CPT_HOME") or ROOT / ".cpt")
    revealing = {str(ROOT), str(home), str(home.resolve()), "pytest-of-"}
    return sorted(p for p in revealing if p in text)


def test_machine_paths_finds_the_checkout():
    assert str(ROOT) in machine_paths(f"dataset: {ROOT}/.cpt/sample")
    assert machine_paths("dataset: /tmp/cpt-ui-x1/sample/dolmino") == []


def test_bad_mix_is_refused_and_starts_no_run(page, airflow, ui_out):
    runs_before = count_runs(page, airflow.url, DAG_ID)
    dialog = open_trigger_form(page, airflow.url, DAG_ID)
    open_section(dialog, "Data")
    assert read_json_editor(dialog, "proportions") == DEMO_MIX
    bad = {**DEMO_MIX, "dclm": 0.372}  # sums to 0.9
    type_json(page, dialog, "proportions", bad)
    submit_trigger(dialog)

    expect(dialog.get_by_text("Invalid input for param proportions")).to_be_visible()
    expect(dialog.get_by_text("is not a 'proportions-sum-to-1'")).to_be_visible()
    expect(page.get_by_text("Failed to Trigger Dag")).to_be_visible()
    screenshot_dialog(page, dialog, ui_out / "trigger-form-refused.png")
    assert page.get_by_role("dialog").count() == 1, "the form closed although the trigger was refused"

    dialog.get_by_role("button", name="Close").click()
    assert count_runs(page, airflow.url, DAG_ID) == runs_before


@pytest.mark.timeout(1500)
def test_trigger_with_changed_params_runs_to_success(page, airflow, ui_out):
    dialog = open_trigger_form(page, airflow.url, DAG_ID)
    open_section(dialog, "Data")
    total = dialog.get_by_role("spinbutton", name="Total train tokens")
    subsets = param_field(dialog, "subsets")  # a textarea the UI gives no accessible name
    expect(total).to_have_value("350000")  # the demo's defaults, not production's 50e9
    expect(subsets).to_have_value("\n".join(DEMO_MIX))
    total.fill("60000")
    subsets.fill("wiki\nmath")
    assert not machine_paths(read_form_text(dialog)), "the form shows this machine's paths"
    screenshot_dialog(page, dialog, ui_out / "trigger-form.png")
    submit_trigger(dialog)

    run_id = wait_for_run_page(page, DAG_ID)
    state = wait_run_finished(page, run_id, timeout=1200)
    open_run(page, airflow.url, DAG_ID, run_id)
    assert not machine_paths(page.locator("body").inner_text()), "the run's page shows this machine's paths"
    page.screenshot(path=str(ui_out / "run-grid.png"))
    assert state == "Success", f"run {run_id} ended {state}; see {ui_out / 'run-grid.png'} and the Airflow log"
    assert read_task_states(page) == {
        "plan": "Success", "convert[wiki]": "Success", "convert[math]": "Success", "verify": "Success",
        "train": "Success", "evaluate": "Success"}

    details = read_run_details(page, airflow.url, DAG_ID, run_id)
    assert details.get("Triggered By") == "ui", details
    conf = copy_run_conf(page)
    assert conf["total_tokens"] == 60000 and conf["subsets"] == ["wiki", "math"], conf
    assert conf["proportions"] == DEMO_MIX

    from mlflow import MlflowClient

    for task in ("train", "evaluate"):
        href = read_extra_link(page, airflow.url, DAG_ID, run_id, task, "MLflow run")
        found = RUN_PAGE.match(href or "")
        assert found, f"{task}: {href!r}"
        tracked = MlflowClient(airflow.tracking).get_run(found.group(2))
        assert tracked.info.experiment_id == found.group(1) and tracked.data.tags["cpt.step"] == task
        assert tracked.data.tags["cpt.dag_run_id"] == run_id and tracked.info.status == "FINISHED"
    page.screenshot(path=str(ui_out / "task-links.png"))
