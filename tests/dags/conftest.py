"""Fixtures for the DAG's tests, which run in the orchestration env (``make test-dags``): a private Airflow
home per session (set before Airflow is imported), the DAG loaded under either runner, and a runner of
``airflow dags test`` on the bundled sample (each in its own home, whose metadata DB is a copy of the session's
one migration)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_HOME = Path(tempfile.mkdtemp(prefix="cpt-airflow-tests-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)  # before any Airflow import: never touch ~/airflow
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def cpt_home() -> Path:
    """Where ``make setup`` put the sample, the tokenizer and the tiny model."""
    home = Path(os.environ.get("CPT_HOME") or ROOT / ".cpt")
    for needed in ("sample/dolmino/.complete", "tokenizer/llama3/tokenizer.json", "models/tiny-llama/config.json"):
        if not (home / needed).exists():
            pytest.fail(f"{home / needed} is missing: run `make setup` first")
    return home


@pytest.fixture
def load_dag(monkeypatch):
    """load_dag(runner) -> the cpt_dolmino DAG parsed by a real DagBag with CPT_RUNNER=runner."""

    def load(runner: str, **env: str):
        from airflow.dag_processing.dagbag import DagBag

        monkeypatch.setenv("CPT_RUNNER", runner)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert bag.import_errors == {}, bag.import_errors
        return bag.dags["cpt_dolmino"]

    return load


_MIGRATED = _HOME / "migrated-airflow.db"  # the session's first `airflow db migrate`, copied into later homes


def migrate(env: dict[str, str]) -> None:
    """The metadata DB of the home ``env`` names, as ``airflow db migrate`` makes it: made once per session, the
    empty migrated DB is copied into every later home (it names no home or path; a migration is seconds)."""
    conn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert conn.startswith("sqlite:///"), conn
    db = Path(conn.removeprefix("sqlite:///"))
    if _MIGRATED.is_file():
        shutil.copyfile(_MIGRATED, db)
        return
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)
    shutil.copyfile(db, _MIGRATED.with_suffix(".partial"))
    _MIGRATED.with_suffix(".partial").rename(_MIGRATED)


class DagTest:
    """Runs ``airflow dags test <dag_id>`` (default cpt_dolmino) in a private Airflow home with the demo's Params."""

    def __init__(self, base: Path, dag_id: str = "cpt_dolmino") -> None:
        self.dag_id = dag_id
        from cpt_local.airflow_home import demo_params, prepare

        self.storage = base / "storage"
        self.tracking = f"file://{base / 'mlflow'}"
        self.env = {**os.environ, **prepare(cpt_home(), base / "airflow", self.storage, tracking=self.tracking)}
        demo = demo_params(cpt_home(), self.storage)
        # The demo's training, shortened: 8 steps, a checkpoint and an eval every 4; its evaluation on fewer ICL
        # examples and one val batch per subset (the DAG is the subject; tests/cpt_tasks check the numbers).
        shorter = {"save_interval": "4ba", "eval_interval": "4ba"}
        self.params = demo | {"max_duration": "8ba", "train_options": demo["train_options"] | shorter,
                              "evaluate_options": {"max_icl_examples": 16, "eval_subset_num_batches": 1}}
        migrate(self.env)

    def run(self, **conf) -> subprocess.CompletedProcess:
        argv = [AIRFLOW, "dags", "test", self.dag_id, "--conf", json.dumps(self.params | conf)]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=900)

    def states(self, proc: subprocess.CompletedProcess) -> dict[str, str]:
        """task (or task[subset]) -> state of the run that ``proc`` ran, from Airflow's REST API."""
        from cpt_local.demo import task_states

        return {s["task_id"] + (f"[{s['label']}]" if s["map_index"] >= 0 else ""): s["state"]
                for s in task_states(Path(self.env["AIRFLOW_HOME"]), run_id_of(proc), self.dag_id)}


def run_id_of(proc: subprocess.CompletedProcess) -> str:
    import re

    found = re.findall(r"DagRun Finished: .*?run_id=([^\s,]+)", proc.stdout + proc.stderr)
    assert found, (proc.stdout + proc.stderr)[-3000:]
    return found[-1]


@pytest.fixture(scope="module")
def dag_test(tmp_path_factory) -> DagTest:
    """One Airflow home and storage root per test module."""
    return DagTest(tmp_path_factory.mktemp("dagtest"))
