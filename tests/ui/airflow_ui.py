"""What a person does in the Airflow 3.3 UI, as Playwright steps. Selectors are the ones a user sees: labels,
roles and button names from the UI's English texts; where the UI has no accessible name, the ids and test
ids its own source gives them (`element_<param>` for a Param's field, `state-badge`)."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import unquote

from playwright.sync_api import Locator, Page, expect

from .airflow_server import PASSWORD, USER

FINAL_BAD = {"Failed", "Upstream Failed", "Removed"}


def log_in(page: Page, url: str) -> None:
    """Sign in through SimpleAuthManager's login page and land on the home page."""
    page.goto(url)
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")


def open_trigger_form(page: Page, url: str, dag_id: str) -> Locator:
    """Open the DAG's page, press Trigger and return the dialog once its Params are loaded."""
    page.goto(f"{url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=re.compile(f"Trigger Dag - +{dag_id}"))).to_be_visible()
    expect(dialog.get_by_role("button", name="Trigger", exact=True)).to_be_visible()
    page.wait_for_load_state("networkidle")  # the form resets itself once the DAG's params arrive
    return dialog


def open_section(dialog: Locator, title: str) -> None:
    """Expand a collapsed group of Params (the Params' `section`)."""
    header = dialog.get_by_role("button", name=title, exact=True)
    if header.get_attribute("aria-expanded") != "true":
        header.click()
    expect(header).to_have_attribute("aria-expanded", "true")


def param_field(dialog: Locator, param: str) -> Locator:
    """A Param's input or textarea by the form name the UI gives it (`element_<param>`)."""
    return dialog.locator(f'[name="element_{param}"]')


def json_editor(dialog: Locator, param: str) -> Locator:
    """The JSON editor (Monaco) an `object` Param renders as."""
    return dialog.locator(f"#element_{param}")


def read_json_editor(dialog: Locator, param: str, timeout: float = 10):
    """The value shown in an `object` Param's editor, parsed (waits while the editor is still empty)."""
    lines = json_editor(dialog, param).locator(".view-lines")
    deadline = time.monotonic() + timeout
    while True:
        text = lines.inner_text().replace("\xa0", " ")
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            assert time.monotonic() < deadline, f"the {param} editor shows no JSON: {text!r}"
            time.sleep(0.2)


def type_json(page: Page, dialog: Locator, param: str, value) -> None:
    """Replace an `object` Param's value by typing into its editor like a user: select all, type the JSON,
    drop what the editor's bracket auto-closing appended after the cursor; wait until the editor shows it."""
    json_editor(dialog, param).locator(".view-lines").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(json.dumps(value))
    page.keyboard.press("Shift+Control+End")
    page.keyboard.press("Delete")
    deadline = time.monotonic() + 10
    while (shown := read_json_editor(dialog, param)) != value:
        assert time.monotonic() < deadline, f"the {param} editor shows {shown!r}, not {value!r}"
        time.sleep(0.2)


def screenshot_dialog(page: Page, dialog: Locator, path) -> None:
    """Screenshot the whole dialog: the viewport grows to its height for the shot, then shrinks back."""
    size = page.viewport_size
    height = int(dialog.bounding_box()["height"]) + 160
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    try:
        dialog.screenshot(path=str(path))
    finally:
        page.set_viewport_size(size)


def read_form_text(dialog: Locator) -> str:
    """Everything the form holds, shown or not: its text and the value of every input and textarea (also in
    collapsed sections)."""
    values = dialog.locator("input, textarea").evaluate_all("els => els.map(e => e.value)")
    return "\n".join([dialog.inner_text(), *values])


def submit_trigger(dialog: Locator) -> None:
    dialog.get_by_role("button", name="Trigger", exact=True).click()


def wait_for_run_page(page: Page, dag_id: str, timeout: float = 30) -> str:
    """After a successful trigger the UI opens the new run; return its run id."""
    page.wait_for_url(re.compile(rf"/dags/{re.escape(dag_id)}/runs/[^/]+$"), timeout=timeout * 1000)
    return unquote(page.url.rstrip("/").rsplit("/", 1)[1])


def run_state_badge(page: Page, run_id: str) -> Locator:
    """The state badge beside the run's heading on its page."""
    heading = page.get_by_role("heading", name=run_id, exact=True)
    return heading.locator("xpath=..").get_by_test_id("state-badge")


def wait_run_finished(page: Page, run_id: str, timeout: float) -> str:
    """Watch the run's page (the UI refreshes itself) until the run is final; return the state shown."""
    deadline = time.monotonic() + timeout
    badge = run_state_badge(page, run_id)
    reloaded = time.monotonic()
    while time.monotonic() < deadline:
        state = badge.inner_text().strip() if badge.count() else ""
        if state == "Success" or state in FINAL_BAD:
            return state
        if time.monotonic() - reloaded > 60:  # belt and braces if auto-refresh stalls
            page.reload()
            reloaded = time.monotonic()
        time.sleep(2)
    raise TimeoutError(f"run {run_id} not finished after {timeout:.0f}s (shows {badge.inner_text()!r})")


def open_run(page: Page, url: str, dag_id: str, run_id: str) -> None:
    """Load the run's page afresh (grid and Task Instances as the server has them now)."""
    page.goto(f"{url}/dags/{dag_id}/runs/{run_id}")
    expect(run_state_badge(page, run_id)).to_be_visible()
    expect(page.get_by_test_id("table-cell-state").first).to_be_visible()
    page.wait_for_load_state("networkidle")


def read_task_states(page: Page) -> dict[str, str]:
    """The run page's Task Instances table as {task id or task[map index]: state}."""
    states = {}
    for row in page.get_by_role("row").filter(has=page.get_by_test_id("table-cell-state")).all():
        task = row.get_by_role("link").first.inner_text().strip()
        index = row.get_by_test_id("table-cell-rendered_map_index").inner_text().strip()
        states[f"{task}[{index}]" if index else task] = row.get_by_test_id("table-cell-state").inner_text().strip()
    return states


def read_run_details(page: Page, url: str, dag_id: str, run_id: str) -> dict[str, str]:
    """The run's Details tab as {field: text}."""
    page.goto(f"{url}/dags/{dag_id}/runs/{run_id}/details")
    expect(page.get_by_role("row").filter(has_text="Conf").first).to_be_visible()
    details = {}
    for row in page.get_by_role("row").all():
        cells = row.locator("th, td").all()
        if len(cells) >= 2:
            details[cells[0].inner_text().strip()] = cells[1].inner_text().replace("\xa0", " ").strip()
    return details


def copy_run_conf(page: Page) -> dict:
    """Press Copy beside the Conf on the run's Details tab and read the clipboard (the viewer shows only the
    lines in view, the clipboard gets all of it)."""
    row = page.get_by_role("row").filter(has=page.get_by_text("Conf", exact=True))
    row.get_by_role("button", name="Copy").click()
    return json.loads(page.evaluate("navigator.clipboard.readText()"))


def read_extra_link(page: Page, url: str, dag_id: str, run_id: str, task_id: str, name: str) -> str:
    """The address of a task instance's extra link, as its Details tab shows it (under "Extra Links")."""
    page.goto(f"{url}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/details")
    link = page.get_by_role("link", name=name)
    expect(link).to_be_visible()
    return link.get_attribute("href")


def count_runs(page: Page, url: str, dag_id: str) -> int:
    """The number the DAG's Runs tab reports ("1 Dag Run", "3 Dag Runs"; none when empty)."""
    page.goto(f"{url}/dags/{dag_id}/runs")
    counted = page.get_by_text(re.compile(r"^\d+ Dag Runs?$"))
    empty = page.get_by_text(re.compile(r"^No Dag Runs? found", re.I))
    expect(counted.or_(empty).first).to_be_visible()
    if empty.count() and not counted.count():
        return 0
    return int(counted.first.inner_text().split()[0])
