"""``airflow dags test cpt_dolmino`` for real, in local mode on the bundled sample: plan, seven conversions (dclm
in two parts, merged), verification, CPU training of a tiny Llama and its evaluation against the base model, with MLflow tracking to a
local file store (what ``make demo`` runs); then a rerun that converts nothing, trains nothing and evaluates
nothing, a bad mix rejected before any task runs, and a corrupted subset that stops the run at verify. The tests
share one Airflow home and storage root and run in file order."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from conftest import run_id_of
from cpt_local.airflow_api import query_api

SUBSETS = ("dclm", "flan", "pes2o", "wiki", "stackexchange", "math")
PART_TOKENS = 100_000  # the sample's dclm (~165,000 tokens, two files) converts in two parts, the others whole
CONVERTS = ("dclm/0", "dclm/1", "flan", "pes2o", "wiki", "stackexchange", "math")  # the convert tasks' labels
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # the first run trains and evaluates on the CPU


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
    dag_test.params["part_tokens"] = PART_TOKENS  # every run of this module
    proc = dag_test.run()
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def test_first_run_succeeds_in_every_task(dag_test, first_run):
    states = dag_test.states(first_run)
    assert states == {"plan": "success", "verify": "success", "train": "success", "evaluate": "success",
                      **{f"convert[{s}]": "success" for s in CONVERTS}}


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
    """The run's asset events as Airflow's REST API lists them: one per asset, each from the step that made it."""
    home = Path(dag_test.env["AIRFLOW_HOME"])
    (found,) = query_api(home, ("/assets/events", {"source_run_id": run_id_of(first_run)}))
    events = {e["name"]: (e["source_task_id"], e["extra"]) for e in found["asset_events"]}
    made = {f"cpt_dolmino/{name}" for name in (*SUBSETS, "checkpoint", "eval")}
    assert len(events) == len(found["asset_events"]) and set(events) == made, sorted(events)  # no domain: none
    assert {e["source_dag_id"] for e in found["asset_events"]} == {"cpt_dolmino"}
    report = json.loads((run_dir(dag_test, first_run) / "verify-report.json").read_text())
    for subset in report["subsets"]:
        task, extra = events[f"cpt_dolmino/{subset['name']}"]
        assert task == "verify" and extra["train_tokens"] == subset["train_tokens"]
        assert extra["fingerprint"] == subset["fingerprint"] and extra["location"] == subset["out_root"]
    task, extra = events["cpt_dolmino/checkpoint"]
    assert task == "train" and extra["plan_fingerprint"] == report["plan"]["fingerprint"]
    task, extra = events["cpt_dolmino/eval"]
    assert task == "evaluate" and extra["plan_fingerprint"] == report["plan"]["fingerprint"]
    assert extra["report"].endswith("/eval-report.json") and extra["subsets"] == len(SUBSETS)


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
    evaluated_in = datasets(by_job["cpt_dolmino.evaluate"][-1], "inputs")
    val_splits = {(n, f"{name}/val") for n, name in verified}
    assert ("file", f"{checkpoint[1]}/hf") in evaluated_in and val_splits <= evaluated_in
    assert any(name.endswith("/icl-tasks.yaml") for _, name in evaluated_in)
    (report_out,) = datasets(by_job["cpt_dolmino.evaluate"][-1], "outputs")
    assert report_out[1].startswith(f"{checkpoint[1]}/eval/") and report_out[1].endswith("/eval-report.json")


def test_the_summary_ends_with_the_evaluation_table(dag_test, first_run):
    from cpt_local.demo import summarize

    summary = summarize(dag_test.storage, run_id_of(first_run), [])
    table = summary[summary.index("Evaluation (did continual pretraining help?)"):].splitlines()
    for subset in SUBSETS:
        assert any(line.split()[:2] == [subset, "LanguageCrossEntropy"] for line in table), subset
        assert any(line.startswith(f"heldout_{subset}/0-shot ") for line in table), subset
    files = table[0].split(": ", 1)[1].split(", ")
    assert [Path(f).name for f in files] == ["eval-report.md", "eval.png"] and all(Path(f).exists() for f in files)
    tracked = summary[summary.index("MLflow runs"):].splitlines()[1:3]
    assert [line.split()[0] for line in tracked] == ["train", "evaluate"]
    assert all(line.split()[1].startswith("http://127.0.0.1:5000/#/experiments/") for line in tracked), tracked


MLFLOW_RUNS = """
import json, sys
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
print(json.dumps([{"experiment": client.get_experiment(r.info.experiment_id).name, "id": r.info.run_id,
                   "name": r.info.run_name, "status": r.info.status, "tags": r.data.tags,
                   "metrics": sorted(r.data.metrics), "params": r.data.params} for r in runs]))
"""


def test_mlflow_holds_a_run_per_step_with_metrics_and_tags(dag_test, first_run):
    """Read with the MLflow client (the tasks env: the Airflow env has no mlflow) from the local file store."""
    import subprocess

    from conftest import ROOT

    out = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", MLFLOW_RUNS, dag_test.tracking],
                         capture_output=True, text=True, check=True, timeout=300)
    runs = json.loads(out.stdout.strip().splitlines()[-1])
    assert {r["experiment"] for r in runs} == {"cpt_dolmino"} and {r["status"] for r in runs} == {"FINISHED"}
    steps = {r["tags"].get("cpt.step") for r in runs}
    assert steps == {"train", "evaluate"}
    report = json.loads((run_dir(dag_test, first_run) / "verify-report.json").read_text())
    pointer = dag_test.storage / "checkpoints" / "finished" / f"{report['plan']['fingerprint']}.json"
    manifest = json.loads(Path(json.loads(pointer.read_text())["run_manifest"]).read_text())
    (train,) = [r for r in runs if r["tags"].get("cpt.step") == "train"]
    assert train["id"] == manifest["mlflow"]["run_id"] == train["params"]["mlflow_run_id"]
    assert train["tags"]["cpt.plan_fingerprint"] == report["plan"]["fingerprint"]
    assert train["tags"]["cpt.dag_id"] == "cpt_dolmino" and train["tags"]["cpt.dag_run_id"] == run_id_of(first_run)
    assert train["tags"]["cpt.task_id"] == "train" and train["tags"]["cpt.data.math.manifest"].endswith("manifest.json")
    assert {"loss/train/total", *(f"metrics/eval/{s}/LanguageCrossEntropy" for s in SUBSETS)} <= set(train["metrics"])
    evaluations = [r for r in runs if r["tags"].get("cpt.step") == "evaluate"]
    (parent,) = [r for r in evaluations if "mlflow.parentRunId" not in r["tags"]]
    assert parent["tags"]["cpt.train_mlflow_run_id"] == train["id"]
    assert {f"delta/{s}/LanguageCrossEntropy" for s in SUBSETS} | {
        f"trained/heldout_{s}/0-shot/InContextLearningLMAccuracy" for s in SUBSETS} <= set(parent["metrics"])
    children = {r["tags"]["cpt.model_role"]: r for r in evaluations if r is not parent}
    assert sorted(children) == ["base", "trained"]
    assert all(c["tags"]["mlflow.parentRunId"] == parent["id"] for c in children.values())
    assert all("metrics/eval/dclm/LanguageCrossEntropy" in c["metrics"] for c in children.values())


def test_train_and_evaluate_link_to_their_mlflow_runs(dag_test, first_run):
    """The "MLflow run" extra link as Airflow's REST API serves it to the UI: on train and evaluate only, each the
    run page its task's result names."""
    run = f"/dags/cpt_dolmino/dagRuns/{run_id_of(first_run)}/taskInstances"
    instances = [("plan", -1), *(("convert", i) for i in range(len(CONVERTS))), ("verify", -1), ("train", -1),
                 ("evaluate", -1)]
    answers = query_api(Path(dag_test.env["AIRFLOW_HOME"]),
                        *((f"{run}/{task}/links", {"map_index": i}) for task, i in instances),
                        *((f"{run}/{task}/xcomEntries/return_value", {}) for task in ("train", "evaluate")))
    links = [(task, answer["extra_links"]) for (task, _), answer in zip(instances, answers)]
    assert [task for task, found in links if any(found.values())] == ["train", "evaluate"], links
    for (task, found), result in zip(links[-2:], answers[len(instances):]):
        url = result["value"]["mlflow"]["run_url"]
        assert found == {"MLflow run": url} and url.startswith("http://127.0.0.1:5000/#/experiments/"), task


def test_the_api_reads_every_page_and_names_what_it_refused(dag_test, first_run):
    """query_api, which the demo's summary and the tests above read through, joins a collection's pages in their
    order, takes a relative home, and raises on any answer but 200."""
    home = Path(dag_test.env["AIRFLOW_HOME"])
    run = f"/dags/cpt_dolmino/dagRuns/{run_id_of(first_run)}/taskInstances"
    relative = Path(os.path.relpath(home))  # a home given relative to the working folder works too
    whole, paged = query_api(relative, (run, {"order_by": "start_date"}),
                             (run, {"order_by": "start_date", "limit": 3}))
    assert paged["total_entries"] == len(paged["task_instances"]) == len(CONVERTS) + 4
    assert paged["task_instances"] == whole["task_instances"]
    with pytest.raises(RuntimeError, match="404"):
        query_api(home, ("/dags/cpt_dolmino/dagRuns/no-such-run/taskInstances/train/links", {}))


def test_second_run_converts_nothing_and_succeeds(dag_test, first_run):
    proc = dag_test.run()
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    states = dag_test.states(proc)
    assert {states[f"convert[{s}]"] for s in CONVERTS} == {"skipped"}
    assert states["plan"] == states["verify"] == "success"
    assert states["train"] == "skipped"  # train=if_changed: this data was already trained on
    assert states["evaluate"] == "skipped"  # evaluate=if_trained: no new model
    assert "already complete (exit 99)" in proc.stdout + proc.stderr


def test_a_skipped_step_says_why_in_full_and_the_summary_says_what_is_earlier(dag_test, first_run):
    """The second run (above) skipped train and evaluate: their whole reasons, with the Param that changes them,
    and a summary that shows the first run's training and evaluation as such."""
    from cpt_local.dags_test_log import skip_reason
    from cpt_local.demo import summarize, task_states

    second = dag_test.run()
    skips = dict(found for found in map(skip_reason, (second.stdout + second.stderr).splitlines()) if found)
    assert skips["train"].startswith("this data (plan ") and skips["train"].endswith(
        "; trigger with train=always to train again"), skips
    assert "trigger with evaluate=always" in skips["evaluate"], skips

    def summary(proc, reasons=None) -> str:
        run_id = run_id_of(proc)
        return summarize(dag_test.storage, run_id, task_states(Path(dag_test.env["AIRFLOW_HOME"]), run_id), reasons)

    text = summary(second, skips)
    assert f"  train skipped: {skips['train']}" in text
    assert "Training (from an earlier run, run " in text and "; train was skipped in this one):" in text
    assert "Evaluation (did continual pretraining help?) (from an earlier run, made " in text
    assert "from an earlier run" not in summary(first_run)


def test_a_bad_mix_is_rejected_before_any_task_runs(dag_test, first_run):
    before = set((dag_test.storage / "runs" / "cpt_dolmino").iterdir())
    proc = dag_test.run(proportions={"dclm": 0.5, "flan": 0.2, "math": 0.2})
    assert proc.returncode != 0
    assert "proportions-sum-to-1" in proc.stdout + proc.stderr
    assert "[DAG TEST] starting task" not in proc.stdout + proc.stderr
    assert set((dag_test.storage / "runs" / "cpt_dolmino").iterdir()) == before


def test_a_misspelt_param_in_the_conf_fails_the_run_at_once_naming_the_closest_param(dag_test, first_run):
    """Airflow keeps a conf key that is no Param as a Param of its own; the run would go on with the default."""
    proc = dag_test.run(domian="/somewhere/corpus")
    assert proc.returncode != 0
    states = dag_test.states(proc)
    assert states["plan"] == "failed" and states["verify"] == "upstream_failed", states
    assert "unknown Param 'domian' (did you mean 'domain'?)" in proc.stdout + proc.stderr
    assert "Running: " not in proc.stdout + proc.stderr  # refused before the step ran (and not retried)


def test_the_run_names_each_mapped_task_by_its_component(first_run):
    from cpt_local.dags_test_log import DagsTestLog

    seen = DagsTestLog()
    shown = [line for line in map(seen.feed, (first_run.stdout + first_run.stderr).splitlines()) if line]
    assert sorted(line for line in shown if line.startswith("convert")) == sorted(
        f"convert[{s}] done" for s in CONVERTS), shown
    assert not seen.failures and seen.run_id == run_id_of(first_run)


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
    assert states["verify"] == "failed" and states["train"] == states["evaluate"] == "upstream_failed"
    assert {states[f"convert[{s}]"] for s in CONVERTS} == {"skipped"}  # the manifest is there; verify catches it
    assert "exited 3" in proc.stdout + proc.stderr  # final: no retry burnt on bad data
