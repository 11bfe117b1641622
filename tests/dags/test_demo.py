"""``make demo``'s own entry point (``python -m cpt_local.demo``) when a run fails: the console names the
failed task, its exit status and the job's own error line, and the summary names no file that was not written.
Its own ``CPT_HOME`` (the set-up inputs linked in), so the user's demo home is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cpt_home

pytestmark = [pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A CPT_HOME with make setup's sample, tokenizer and models linked in."""
    home = tmp_path_factory.mktemp("cpt-home")
    for name in ("sample", "tokenizer", "models"):
        (home / name).symlink_to(cpt_home() / name)
    return home


def demo(home: Path, conf: dict, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CPT_HOME": str(home)}
    env.pop("AIRFLOW_HOME", None)  # the demo makes its own under CPT_HOME
    return subprocess.run([sys.executable, "-m", "cpt_local.demo", "--conf", json.dumps(conf), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)


def test_a_demo_whose_plan_fails_prints_the_plans_own_error_and_no_unwritten_path(home):
    proc = demo(home, {"total_tokens": 1000})
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    explained = out.split("FAILED in ", 1)[1]
    assert "\nplan failed:\n" in explained, out
    reason = next(line.strip() for line in explained.splitlines() if "cpt-tasks plan: error:" in line)
    assert "is smaller than one row" in reason and "--total_tokens" in reason, reason  # the job's own words
    assert "exited 2: bad input or arguments" in explained, out  # the exit status, final
    log = Path(next(line.split("Full log: ", 1)[1] for line in out.splitlines() if line.startswith("Full log: ")))
    assert reason in log.read_text()  # the same line as in the full log
    assert "Plan:" not in out and "plan.json" not in out, out  # the plan failed: it wrote none
    assert "  plan      failed" in out, out


def test_a_domain_demo_without_its_corpus_says_how_to_make_it(tmp_path):
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "dolmino").symlink_to(cpt_home() / "sample" / "dolmino")
    for name in ("tokenizer", "models"):
        (tmp_path / name).symlink_to(cpt_home() / name)
    proc = demo(tmp_path, {}, "--domain", "python", "--dry_run")
    assert proc.returncode != 0 and "`make demo-domain` writes it first" in proc.stderr, proc.stderr[-2000:]
    assert "would run" not in proc.stdout
