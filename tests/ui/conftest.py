"""Session fixtures for the UI tests: a real Airflow run as `make airflow` runs it, on 127.0.0.1 only, with the
repo's dags/ in the demo's configuration (local runner, demo Param defaults) but a private Airflow home and storage
root, stopped with every process it started (checked); Debian's headless Chromium driven by Playwright with a
fresh profile, signed in once; `build/ui/` for screenshots (a failing test leaves its page there too;
`make ui-screenshots` copies the README's into docs/ui/). The form's paths are under a neutral /tmp/cpt-ui-…"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from cpt_local.airflow_home import prepare

from .airflow_server import ROOT, AirflowServer
from .airflow_ui import log_in

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
DAG_ID = "cpt_dolmino"
OUT = ROOT / "build" / "ui"


@pytest.fixture(scope="session")
def ui_out() -> Path:
    """build/ui/, emptied once per session: screenshots and the Airflow log of the last UI run."""
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    return OUT


@pytest.fixture(scope="session")
def neutral_home():
    """A short directory under /tmp whose sample/, tokenizer/ and models/ link to $CPT_HOME's: the form's
    defaults and the screenshots in docs/ui/ show ``/tmp/cpt-ui-…/sample/dolmino``, not this machine's paths."""
    home = Path(os.environ.get("CPT_HOME") or ROOT / ".cpt").resolve()
    for needed in ("sample/dolmino/.complete", "tokenizer/small/tokenizer.json", "models/tiny-small/config.json"):
        if not (home / needed).exists():
            pytest.fail(f"{home / needed} is missing: run `make setup` first")
    base = Path(tempfile.mkdtemp(prefix="cpt-ui-", dir="/tmp" if Path("/tmp").is_dir() else None))
    for name in ("sample", "tokenizer", "models"):
        (base / name).symlink_to(home / name)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow(neutral_home, ui_out):
    """Airflow serving cpt_dolmino, listening on 127.0.0.1 only; every process it started is gone after the
    session."""
    base = neutral_home
    # The UI's subject is the form and the run's page, not training: the small test tokenizer and its tiny
    # model, four steps (the Llama 3 vocabulary is trained end to end by the DAG tests).
    tracking = f"file://{base / 'mlflow'}"
    env = prepare(base, base / "airflow-home", base / "storage",
                  params={"tokenizer": str(base / "tokenizer" / "small"), "model": str(base / "models" / "tiny-small"),
                          "max_duration": "4ba"}, tracking=tracking)
    env["CPT_SCHEDULE"] = "none"  # no scheduled run next to the one the test triggers (max_active_runs=1)
    server = AirflowServer(env=env)
    server.tracking = tracking  # the MLflow store its train and evaluate tasks log to
    try:
        server.start()
        listeners = server.listeners()  # the API server and the log server, on loopback only
        assert listeners == {("127.0.0.1", server.port), ("127.0.0.1", server.log_port)}, listeners
        server.wait_dag(DAG_ID)
        yield server
    finally:
        survivors = server.stop()
        if server.log.exists():
            shutil.copy(server.log, ui_out / "airflow-standalone.log")
        assert not survivors, f"processes left running after Airflow stopped: {survivors}"


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory):
    """Headless Debian Chromium (never Playwright's own download) with a fresh profile directory."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} missing in CI: .ci/run installs Debian's chromium before `make test`")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); CI installs it")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM),
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000},
            permissions=["clipboard-read", "clipboard-write"])  # the UI's Copy buttons
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="session")
def logged_in(browser_context, airflow):
    """The browser context after signing in once as the test user through the login page."""
    page = browser_context.new_page()
    log_in(page, airflow.url)
    page.close()
    return browser_context


@pytest.fixture
def page(logged_in, ui_out, request):
    """A fresh tab of the signed-in browser; on failure its screenshot lands in build/ui/."""
    tab = logged_in.new_page()
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        tab.screenshot(path=str(ui_out / f"FAILED-{request.node.name}.png"), full_page=True)
    tab.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report
