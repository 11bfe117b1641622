"""The trigger form, used like a person would in headless Chromium: change Params, trigger, watch the run
succeed on its page; a mix whose proportions do not sum to 1 is refused by the form and starts no run."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from .airflow_ui import (count_runs, open_trigger_form, read_json_editor, read_run_details, screenshot_dialog,
                         submit_trigger, type_json, wait_for_run_page, wait_run_finished)

pytestmark = [pytest.mark.ui, pytest.mark.slow]
DAG_ID = "ui_fixture"


def test_bad_mix_is_refused_and_starts_no_run(page, airflow, ui_out):
    runs_before = count_runs(page, airflow.url, DAG_ID)
    dialog = open_trigger_form(page, airflow.url, DAG_ID)
    type_json(page, dialog, "proportions", {"a": 0.5, "b": 0.4})
    submit_trigger(dialog)

    refusal = dialog.get_by_text("is not a 'cpt-mix-proportions'")
    expect(refusal).to_be_visible()
    expect(dialog.get_by_text("Invalid input for param proportions")).to_be_visible()
    expect(page.get_by_text("Failed to Trigger Dag")).to_be_visible()
    screenshot_dialog(page, dialog, ui_out / "trigger-form-refused.png")
    assert page.get_by_role("dialog").count() == 1, "the form closed although the trigger was refused"

    dialog.get_by_role("button", name="Close").click()
    assert count_runs(page, airflow.url, DAG_ID) == runs_before


def test_trigger_with_changed_params_succeeds(page, airflow, ui_out):
    dialog = open_trigger_form(page, airflow.url, DAG_ID)
    total = dialog.get_by_label("Total tokens")
    expect(total).to_have_value("1000")
    assert read_json_editor(dialog, "proportions") == {"a": 0.5, "b": 0.5}
    total.fill("4321")
    type_json(page, dialog, "proportions", {"a": 0.25, "b": 0.75})
    screenshot_dialog(page, dialog, ui_out / "trigger-form.png")
    submit_trigger(dialog)

    run_id = wait_for_run_page(page, DAG_ID)
    state = wait_run_finished(page, run_id, timeout=180)
    page.screenshot(path=str(ui_out / "run-grid.png"))
    assert state == "Success"

    details = read_run_details(page, airflow.url, DAG_ID, run_id)
    assert details.get("Triggered By") == "ui", details
    conf = json.loads(details["Conf"].removesuffix("Copy").strip())
    assert conf == {"total_tokens": 4321, "subsets": ["a", "b"], "proportions": {"a": 0.25, "b": 0.75}}
