"""The replay sweep's DAG as Airflow parses it: its steps and their mapping, its trigger form (the sweep's own
Params, the big run's that it has no use for left out), and the proxy-runs task rendering each fraction's train
and evaluate command for the run."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import ROOT

SWEEP = "cpt_replay_sweep"


@pytest.fixture
def load_sweep(monkeypatch):
    def load(runner: str):
        from airflow.dag_processing.dagbag import DagBag

        monkeypatch.setenv("CPT_RUNNER", runner)
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert bag.import_errors == {}, bag.import_errors
        return bag.dags[SWEEP]

    return load


@pytest.mark.parametrize("runner", ["local", "kubernetes", "podman"])
def test_the_sweep_runs_each_step_once_and_each_proxy_run_per_fraction(load_sweep, runner):
    dag = load_sweep(runner)
    assert [t for t in dag.task_ids if f"**{t}**" not in dag.doc_md] == []  # the doc describes every step
    upstream = {"convert": {"plan"}, "verify": {"convert"}, "proxy_runs": {"verify"}, "train": {"proxy_runs"},
                "evaluate": {"train", "proxy_runs"}, "recommend": {"evaluate"}}  # the mapped read proxy_runs' result
    assert {t: dag.get_task(t).upstream_task_ids for t in upstream} == upstream
    mapped = {t.task_id for t in dag.tasks if type(t).__name__ == "MappedOperator"}
    assert mapped == {"convert", "train", "evaluate"}
    assert [o.name for o in dag.get_task("recommend").outlets] == ["cpt_dolmino/replay_recommendation"]
    assert dag.schedule is None and dag.max_active_runs == 1


def test_the_sweep_s_form_has_its_own_params_and_none_it_cannot_use(load_sweep):
    from cpt_pipeline.dag_shapes import DEFAULT_PROXY_MODEL, DEFAULT_SWEEP_FRACTIONS
    from cpt_tasks.configs.recommend_config import DEFAULT_FORGETTING_TOLERANCE

    dag = load_sweep("kubernetes")
    values = dag.params.validate()
    assert values["sweep_fractions"] == list(DEFAULT_SWEEP_FRACTIONS) == [0, 0.05, 0.1, 0.25, 0.5]
    assert values["proxy_model"] == DEFAULT_PROXY_MODEL and values["proxy_tokens"] == 1_000_000_000
    assert values["forgetting_tolerance"] == DEFAULT_FORGETTING_TOLERANCE
    assert not {"replay_fraction", "total_tokens", "model", "train", "evaluate"} & set(dag.params)
    options = set(dag.params.get_param("train_options").schema["propertyNames"]["enum"])
    assert "lr" in options and not {"sweep_fraction", "run_id", "model"} & options
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    for bad in ([0.1], [0.1, 1.0], [0.1, 0.1]):  # two fractions at least, each in [0, 1), no repeats
        checked = copy.deepcopy(dag.params)
        with pytest.raises(ParamValidationError):
            checked["sweep_fractions"] = bad
            checked.validate()


def test_proxy_runs_render_each_fraction_s_commands(load_sweep):
    from cpt_tasks.layout import safe_run_id, sweep_run_id

    dag = load_sweep("local")
    task = dag.get_task("proxy_runs")
    params = dag.params.validate() | {"sweep_fractions": [0.5, 0, 0.1], "storage_root": "s3://b/root",
                                      "train_options": {"lr": 0.002}}
    run_id = "manual__2026-01-01T00:00:00+00:00"
    entries = task.execute({"params": params, "run_id": run_id, "dag": dag, "task": task})
    assert [e["fraction"] for e in entries] == [0, 0.1, 0.5]
    for entry in entries:
        train, evaluate = (json.loads(entry[k][2]) for k in ("train", "evaluate"))
        assert entry["train"][:2] == ["train", "--config"] and entry["evaluate"][:2] == ["evaluate", "--config"]
        proxy = sweep_run_id(run_id, entry["fraction"])
        assert train["sweep_fraction"] == entry["fraction"] and train["run_id"] == evaluate["run_id"] == proxy
        assert train["model"] == params["proxy_model"] and train["lr"] == 0.002
        assert train["report"] == evaluate["report"] == \
            f"s3://b/root/runs/{SWEEP}/{safe_run_id(run_id)}/verify-report.json"
    assert len({e["train"][2] for e in entries}) == 3


RECOMPUTE = """
import sys
from cpt_tasks.documents import read_document
from cpt_tasks.documents.sweep_docs import SweepReport
from cpt_tasks.sweep.recommendation import recommend
report = read_document(sys.argv[1], SweepReport)[0]
print(recommend(report.points, report.tolerance).model_dump_json())
"""


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    """One real ``airflow dags test cpt_replay_sweep`` on the smallest data that exercises it: the code corpus
    beside the sample's wiki, the tiny model as the proxy, two fractions of a short run each (make demo-sweep, in
    CI, runs three)."""
    from conftest import DagTest, cpt_home

    from cpt_local.demo import domain_params
    from cpt_local.sweep_demo import sweep_conf

    test = DagTest(tmp_path_factory.mktemp("sweep"), SWEEP)
    conf = sweep_conf(test.params | domain_params(cpt_home(), "python"))
    test.params = conf | {"subsets": ["wiki"], "proxy_tokens": 120_000, "sweep_fractions": [0, 0.5],
                          "max_duration": "2ba", "icl_tasks": "none"}  # held-out losses are what it fits
    proc = test.run()
    return test, proc


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_sweep_converts_once_trains_each_fraction_and_recommends_from_its_own_table(sweep_run):
    from cpt_tasks.documents import read_document
    from cpt_tasks.documents.evaluate_docs import BaseEvalResults, EvalReport
    from cpt_tasks.documents.plan_docs import Plan
    from cpt_tasks.documents.sweep_docs import SweepPointer, SweepReport
    from cpt_tasks.layout import SWEEP_REPORT_JSON, run_dir, safe_run_id, sweep_pointer, sweeps_root

    from conftest import ROOT, run_id_of

    test, proc = sweep_run
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    states = test.states(proc)
    fractions = ["0", "0.5"]
    assert states == {"plan": "success", "convert[wiki]": "success", "convert[python-code]": "success",
                      "verify": "success", "proxy_runs": "success",
                      **{f"{step}[replay {f}]": "success" for step in ("train", "evaluate") for f in fractions},
                      "recommend": "success"}  # each component converted once, one proxy run per fraction
    folder = run_dir(str(test.storage), SWEEP, safe_run_id(run_id_of(proc)))
    plan = read_document(f"{folder}/plan.json", Plan)[0]
    assert plan.sweep.fractions == [0, 0.5] and plan.corpus_key
    report = read_document(f"{folder}/{SWEEP_REPORT_JSON}", SweepReport)[0]
    assert [p.fraction for p in report.points] == [0, 0.5] and report.domain == "python-code"
    evaluations = {p.eval_report: read_document(p.eval_report, EvalReport)[0] for p in report.points}
    (first, evaluated), (_, reused) = sorted(evaluations.items(), key=lambda e: e[1].base_reused is not None)
    assert evaluated.base_reused is None and reused.base_reused  # the base model evaluated once, for both runs
    kept = read_document(reused.base_reused, BaseEvalResults)[0]
    assert kept.evaluated_by == first and "base" in evaluated.seconds and "base" not in reused.seconds
    assert [(r.key, r.base) for r in reused.rows] == [(r.key, r.base) for r in evaluated.rows]
    recomputed = subprocess.run(  # in the tasks env (numpy, scipy): the recommendation follows from its own table
        [str(ROOT / ".venv" / "bin" / "python"), "-c", RECOMPUTE, f"{folder}/{SWEEP_REPORT_JSON}"],
        capture_output=True, text=True, check=True)
    assert json.loads(recomputed.stdout) == report.recommendation.model_dump(mode="json")
    pointer = read_document(sweep_pointer(sweeps_root(str(test.storage)), plan.corpus_key), SweepPointer)[0]
    assert (pointer.status, pointer.fraction, pointer.report) == (
        report.recommendation.status, report.recommendation.fraction, f"{folder}/{SWEEP_REPORT_JSON}")


def test_lineage_names_the_sweep_a_plan_took_its_fraction_from_and_what_the_sweep_read():
    from cpt_pipeline.lineage import plan_lineage, recommend_extras, recommend_lineage
    from cpt_tasks.documents.plan_docs import PlanEntry
    from cpt_tasks.documents.sweep_docs import SweepResult
    from cpt_tasks.documents.train_docs import MlflowRun

    entry = dict(plan="s3://b/runs/cpt_dolmino/r/plan.json", plan_fingerprint="p" * 64, fingerprint="f" * 64,
                 out_root="s3://b/data/x", max_tokens=10, val_tokens=0, dataset="d")
    taken = [PlanEntry(subset=s, replay_from="s3://b/runs/cpt_replay_sweep/s/sweep-report.json", **entry)
             .model_dump(mode="json") for s in ("wiki", "code")]
    assert plan_lineage(taken) == ([("s3://b", "runs/cpt_replay_sweep/s/sweep-report.json")],
                                   [("s3://b", "runs/cpt_dolmino/r/plan.json")])
    plain = [PlanEntry(subset="wiki", **entry).model_dump(mode="json")]
    assert plan_lineage(plain) == ([], [("s3://b", "runs/cpt_dolmino/r/plan.json")])
    result = SweepResult(status="recommended", fraction=0.1, reason="r", report="/s/sweep-report.json",
                         report_md="/s/sweep-report.md", report_png="/s/sweep.png", pointer="/s/sweeps/k.json",
                         plan_fingerprint="p" * 64, corpus_key="k", run_folders=["/c/a", "/c/b"],
                         mlflow=MlflowRun(status="off")).model_dump(mode="json")
    assert recommend_lineage(result) == ([("file", "/c/a"), ("file", "/c/b")],
                                         [("file", "/s/sweep-report.json"), ("file", "/s/sweeps/k.json")])
    assert recommend_extras(result)["cpt_dolmino/replay_recommendation"]["fraction"] == 0.1


@pytest.mark.slow
def test_the_big_run_s_plan_takes_the_sweep_s_recommendation_or_says_why_not(sweep_run, tmp_path):
    """``cpt-tasks plan --replay_fraction recommended`` over the same corpus, mix and tokenizer finds this sweep:
    it plans with its fraction and says where it came from, or, when the sweep recommends none, exits 2 quoting
    why."""
    from cpt_tasks.documents import read_document
    from cpt_tasks.documents.sweep_docs import SweepPointer
    from cpt_tasks.layout import sweeps_root

    from conftest import ROOT

    test, proc = sweep_run
    assert proc.returncode == 0
    params = test.params
    argv = [str(ROOT / ".venv" / "bin" / "cpt-tasks"), "plan", "--dataset", params["dataset"], "--tokenizer",
            params["tokenizer"], "--subsets", "wiki", "--domain", params["domain"], "--domain_text_field",
            params["domain_text_field"], "--domain_name", params["domain_name"], "--concat_tokens",
            str(params["concat_tokens"]), "--val_fraction", str(params["val_fraction"]), "--total_tokens", "200000",
            "--out_root", str(tmp_path / "data"), "--output", str(tmp_path / "plan.json"),
            "--replay_fraction", "recommended", "--sweeps_root", sweeps_root(str(test.storage))]
    planned = subprocess.run(argv, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin"})
    (pointer,) = (ROOT / test.storage / "sweeps").glob("*.json")
    swept = read_document(str(pointer), SweepPointer)[0]
    if swept.status == "recommended":
        assert planned.returncode == 0, planned.stderr[-2000:]
        plan = json.loads((tmp_path / "plan.json").read_text())
        assert plan["replay_from"]["report"] == swept.report and plan["replay_from"]["fraction"] == swept.fraction
        assert "recommended by the replay sweep" in planned.stderr
    else:
        assert planned.returncode == 2 and swept.reason in planned.stderr, planned.stderr[-2000:]
    wrong = subprocess.run([*argv[:-1], str(tmp_path / "no-sweeps")], capture_output=True, text=True,
                           env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin"})
    assert wrong.returncode == 2 and "cpt_replay_sweep" in wrong.stderr, wrong.stderr[-2000:]
