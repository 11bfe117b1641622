"""``airflow dags test cpt_dolmino`` for real, in local mode on the bundled sample: plan, six conversions,
verification and CPU training of a tiny Llama; then a rerun that converts nothing, a bad mix rejected before
any task runs, and a corrupted subset that stops the run at verify. The tests share one Airflow home and
storage root and run in file order."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from conftest import run_id_of

SUBSETS = ("dclm", "flan", "pes2o", "wiki", "stackexchange", "math")
pytestmark = pytest.mark.slow


def run_dir(dag_test, proc) -> Path:
    from cpt_tasks.layout import run_dir as located, safe_run_id

    return Path(located(str(dag_test.storage), "cpt_dolmino", safe_run_id(run_id_of(proc))))


def lineage_events(dag_test) -> list[dict]:
    path = dag_test.storage / "openlineage" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def datasets(event: dict, side: str) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in event.get(side, [])}


@pytest.fixture(scope="module")
def first_run(dag_test):
    proc = dag_test.run()
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def test_first_run_succeeds_in_every_task(dag_test, first_run):
    states = dag_test.states(first_run)
    assert states == {"plan": "success", "verify": "success", "train": "success",
                      **{f"convert[{s}]": "success" for s in SUBSETS}}


def test_verify_report_agrees_with_the_manifests(dag_test, first_run):
    folder = run_dir(dag_test, first_run)
    plan = json.loads((folder / "plan.json").read_text())
    report = json.loads((folder / "verify-report.json").read_text())
    assert report["ok"] and report["plan"]["fingerprint"] == plan["fingerprint"]
    assert (folder / "verify-report.md").exists() and (folder / "verify-mix.png").stat().st_size > 1000
    for subset in report["subsets"]:
        manifest = json.loads(Path(subset["manifest"]).read_text())
        assert subset["train_tokens"] == manifest["splits"]["train"]["tokens"] > 0
        assert subset["val_tokens"] == manifest["splits"]["val"]["tokens"]
        assert manifest["fingerprint"] == subset["fingerprint"]


def test_checkpoint_run_manifest_names_the_verified_data(dag_test, first_run):
    folder = run_dir(dag_test, first_run)
    report_bytes = (folder / "verify-report.json").read_bytes()
    report = json.loads(report_bytes)
    pointer = dag_test.storage / "checkpoints" / "finished" / f"{report['plan']['fingerprint']}.json"
    finished = json.loads(pointer.read_text())
    manifest = json.loads(Path(finished["run_manifest"]).read_text())
    text = json.dumps(manifest)
    assert report["plan"]["fingerprint"] in text
    assert hashlib.sha256(report_bytes).hexdigest() in text
    assert all(s["fingerprint"] in text for s in report["subsets"])
    run_folder = Path(finished["run_folder"])
    assert (run_folder / "hf" / "config.json").exists() and (run_folder / "loss.png").exists()
    assert list((run_folder / "hf").glob("*.safetensors"))


def test_assets_carry_counts_and_locations(dag_test, first_run):
    db = sqlite3.connect(Path(dag_test.env["AIRFLOW_HOME"]) / "airflow.db")
    rows = db.execute("select a.name, e.source_task_id, e.extra from asset_event e join asset a on a.id = "
                      "e.asset_id where e.source_run_id = ?", (run_id_of(first_run),)).fetchall()
    events = {name: (task, json.loads(extra)) for name, task, extra in rows}
    report = json.loads((run_dir(dag_test, first_run) / "verify-report.json").read_text())
    for subset in report["subsets"]:
        task, extra = events[f"cpt_dolmino/{subset['name']}"]
        assert task == "verify" and extra["train_tokens"] == subset["train_tokens"]
        assert extra["fingerprint"] == subset["fingerprint"] and extra["location"] == subset["out_root"]
    task, extra = events["cpt_dolmino/checkpoint"]
    assert task == "train" and extra["plan_fingerprint"] == report["plan"]["fingerprint"]


def test_lineage_links_source_to_mds_to_checkpoint(dag_test, first_run):
    complete = [e for e in lineage_events(dag_test) if e["eventType"] == "COMPLETE"
                and e["run"].get("facets", {}).get("parent", {}).get("run", {}).get("runId")]
    by_job: dict[str, list[dict]] = {}
    for event in complete:
        by_job.setdefault(event["job"]["name"], []).append(event)
    converted = set().union(*(datasets(e, "outputs") for e in by_job["cpt_dolmino.convert"]))
    sources = set().union(*(datasets(e, "inputs") for e in by_job["cpt_dolmino.convert"]))
    verified = datasets(by_job["cpt_dolmino.verify"][-1], "inputs")
    trained = datasets(by_job["cpt_dolmino.train"][-1], "inputs")
    assert len(converted) == len(sources) == 6
    assert converted == verified == trained
    sample = Path(dag_test.params["dataset"]).resolve()
    assert sources == {("file", f"{sample}/data/{subset}") for subset in SUBSETS}  # each subset's source folder
    (checkpoint,) = datasets(by_job["cpt_dolmino.train"][-1], "outputs")
    report = json.loads((run_dir(dag_test, first_run) / "verify-report.json").read_text())
    assert checkpoint[1].rsplit("/", 1)[-1].startswith(report["plan"]["fingerprint"][:16])


def test_second_run_converts_nothing_and_succeeds(dag_test, first_run):
    proc = dag_test.run()
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    states = dag_test.states(proc)
    assert {states[f"convert[{s}]"] for s in SUBSETS} == {"skipped"}
    assert states["plan"] == states["verify"] == "success"
    assert states["train"] == "skipped"  # train=if_changed: this data was already trained on
    assert "already up to date" in proc.stdout + proc.stderr


def test_a_bad_mix_is_rejected_before_any_task_runs(dag_test, first_run):
    before = set((dag_test.storage / "runs" / "cpt_dolmino").iterdir())
    proc = dag_test.run(proportions={"dclm": 0.5, "flan": 0.2, "math": 0.2})
    assert proc.returncode != 0
    assert "proportions-sum-to-1" in proc.stdout + proc.stderr
    assert "[DAG TEST] starting task" not in proc.stdout + proc.stderr
    assert set((dag_test.storage / "runs" / "cpt_dolmino").iterdir()) == before


def test_a_corrupted_subset_fails_verify_and_never_trains(dag_test, first_run):
    report = json.loads((run_dir(dag_test, first_run) / "verify-report.json").read_text())
    wiki = next(s for s in report["subsets"] if s["name"] == "wiki")
    shard = Path(wiki["out_root"]) / "train" / "shard.00000.mds.zstd"  # the stored original
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    proc = dag_test.run(train="always")
    assert proc.returncode != 0
    states = dag_test.states(proc)
    assert states["verify"] == "failed" and states["train"] == "upstream_failed"
    assert {states[f"convert[{s}]"] for s in SUBSETS} == {"skipped"}  # the manifest is there; verify catches it
    assert "exited 3" in proc.stdout + proc.stderr  # final: no retry burnt on bad data
