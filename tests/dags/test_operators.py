"""Both runners apply one exit-status policy: 0 done (result -> XCom, asset metadata), 2 and 3 final
(no retry), 99 skipped (already complete), anything else retried (here the local runner; the Kubernetes runner in
test_kubernetes_operators.py); the training and evaluation gates; the evaluation's Asset metadata and lineage;
the "MLflow run" link; training on several local nodes."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from cpt_tasks.documents.evaluate_docs import EvaluateResult
from cpt_tasks.documents.train_docs import FinishedRun, MlflowRun, TrainResult
from cpt_tasks.documents.verify_docs import SubsetSummary, VerifySummary
from cpt_pipeline.operators import LocalStepOperator, mlflow_run_url
from cpt_pipeline.steps import evaluate_gate, step, train_gate


def fake_cli(tmp_path: Path, status: int, result: dict | None = None) -> str:
    """A stand-in for the tasks env's `cpt-tasks`: writes ``result`` to $CPT_RESULT_FILE, exits ``status``."""
    script = tmp_path / "cpt-tasks"
    body = "echo 'argv:' \"$@\"\necho progress line\n"
    if result is not None:
        body += f"cat > \"$CPT_RESULT_FILE\" <<'JSON'\n{json.dumps(result)}\nJSON\n"
    script.write_text(f"#!/bin/sh\n{body}exit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


class OutletEvents(dict):
    """``context["outlet_events"]`` as Airflow's accessors answer: ``[asset].extra`` to update, and
    ``[alias].add(asset, extra)`` (kept in ``.added`` as (name, extra))."""

    def __missing__(self, outlet):
        added: list = []
        self[outlet] = SimpleNamespace(extra={}, added=added,
                                       add=lambda asset, extra=None: added.append((asset.name, extra)))
        return self[outlet]


def context(params: dict | None = None, verified: dict | None = None) -> dict:
    ti = SimpleNamespace(xcom_pull=lambda task_ids: verified)
    return {"params": params or {}, "ti": ti, "outlet_events": OutletEvents()}


@pytest.mark.parametrize(("status", "error"), [(2, AirflowFailException), (3, AirflowFailException),
                                               (99, AirflowSkipException), (1, AirflowException),
                                               (137, AirflowException)])
def test_local_runner_exit_statuses(tmp_path, status, error):
    op = LocalStepOperator(task_id="convert", arguments=["convert-subset"], tasks_bin=fake_cli(tmp_path, status))
    with pytest.raises(error) as raised:
        op.execute(context())
    if error is AirflowException:  # transient: must stay retryable, i.e. not the final kinds
        assert not isinstance(raised.value, (AirflowFailException, AirflowSkipException))


def verify_result(finished: FinishedRun | None = None) -> dict:
    """The verify step's result document as its XCom holds it."""
    return VerifySummary(
        ok=True, report="/r/verify-report.json", report_md="/r/verify-report.md", plan="/r/plan.json",
        plan_fingerprint="f" * 64, realized_train_tokens=512, finished_training=finished,
        subsets={"dclm": SubsetSummary(status="ok", fingerprint="a" * 64, out_root="/d/dclm",
                                       manifest="/d/dclm/manifest.json", train_tokens=512, val_tokens=256,
                                       proportion=1.0)}).model_dump(mode="json")


def finished_run(folder: str) -> FinishedRun:
    return FinishedRun(run_name="n", run_folder=folder, run_manifest=f"{folder}/run-manifest.json",
                       plan_fingerprint="abc", final_step=1, train_tokens=1, checkpoint=None, hf_export=f"{folder}/hf",
                       finished_at="now")


def test_local_runner_returns_the_result_and_sets_asset_metadata(tmp_path):
    result = verify_result()
    asset = Asset(name="cpt_dolmino/dclm")
    op = LocalStepOperator(task_id="verify", arguments=["verify", "--plan", "p"], outlets=[asset],
                           wiring=step("verify").wiring, tasks_bin=fake_cli(tmp_path, 0, result))
    ctx = context()
    assert op.execute(ctx) == result
    assert ctx["outlet_events"][asset].extra == {
        "fingerprint": "a" * 64, "location": "/d/dclm", "manifest": "/d/dclm/manifest.json", "component": "dclm",
        "train_tokens": 512, "val_tokens": 256, "epochs": 1.0, "plan_fingerprint": "f" * 64,
        "report": "/r/verify-report.json"}
    lineage = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", "/d/dclm")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", "/r/verify-report.json")]


def test_verify_through_an_asset_alias_emits_an_event_for_each_component_of_the_run_and_no_other(tmp_path):
    result = verify_result()
    corpus = {**result["subsets"]["dclm"], "role": "domain", "epochs": 2.0, "out_root": "/d/corpus"}
    result["subsets"]["my-corpus"] = corpus
    alias = AssetAlias(name="cpt_dolmino/verified")
    op = LocalStepOperator(task_id="verify", arguments=["verify", "--plan", "p"], outlets=[alias],
                           wiring=step("verify").wiring, tasks_bin=fake_cli(tmp_path, 0, result))
    ctx = context()
    assert op.execute(ctx) == result
    added = dict(ctx["outlet_events"][alias].added)
    assert sorted(added) == ["cpt_dolmino/dclm", "cpt_dolmino/domain"]  # the corpus under the domain's Asset
    assert added["cpt_dolmino/domain"]["location"] == "/d/corpus" and added["cpt_dolmino/domain"]["epochs"] == 2.0
    assert added["cpt_dolmino/dclm"]["train_tokens"] == 512 and ctx["outlet_events"][alias].extra == {}


@pytest.mark.parametrize(("policy", "finished", "skipped"), [
    ("never", None, True), ("always", "/c/x", False), ("if_changed", None, False), ("if_changed", "/c/x", True)])
def test_training_gate(tmp_path, policy, finished, skipped):
    verified = verify_result(finished_run(finished) if finished else None)
    assert (train_gate({"train": policy}, verified) is not None) == skipped
    trained = trained_result()
    op = LocalStepOperator(task_id="train", arguments=["train"], wiring=step("train").wiring,
                           tasks_bin=fake_cli(tmp_path, 0, trained))
    if skipped:
        with pytest.raises(AirflowSkipException, match="train skipped: "):
            op.execute(context({"train": policy}, verified))
    else:
        assert op.execute(context({"train": policy}, verified)) == trained


def trained_result() -> dict:
    return TrainResult(status="trained", run_name="y", run_folder="/c/y", checkpoint=None, hf_export="/c/y/hf",
                       run_manifest="/c/y/run-manifest.json", plan_fingerprint="f" * 64, final_step=1,
                       train_tokens=1).model_dump(mode="json")


URL = "http://127.0.0.1:5000/#/experiments/7/runs/" + "a" * 32


def evaluated_result() -> dict:
    return EvaluateResult(
        status="evaluated", report="s3://b/c/y/eval/e/eval-report.json", report_md="s3://b/c/y/eval/e/eval-report.md",
        report_png="s3://b/c/y/eval/e/eval.png", eval_fingerprint="e" * 64, plan_fingerprint="f" * 64,
        run_folder="s3://b/c/y", hf_export="s3://b/c/y/hf", val_splits=["s3://b/d/dclm/val"],
        task_files=["s3://b/t/tasks.yaml", "s3://b/t/lm.jsonl", "hf://datasets/x"],
        headline={"subsets": 1, "subsets_better": 1},
        mlflow=MlflowRun(status="tracked", experiment_id="7", run_id="a" * 32, run_url=URL)).model_dump(mode="json")


@pytest.mark.parametrize(("policy", "trained", "skipped"), [
    ("never", True, True), ("always", False, False), ("if_trained", True, False), ("if_trained", False, True)])
def test_evaluation_gate_reads_the_training_result(tmp_path, policy, trained, skipped):
    upstream = trained_result() if trained else None  # None: training was skipped (no XCom)
    assert (evaluate_gate({"evaluate": policy}, upstream) is not None) == skipped
    asset = Asset(name="cpt_dolmino/eval")
    op = LocalStepOperator(task_id="evaluate", arguments=["evaluate"], wiring=step("evaluate").wiring, outlets=[asset],
                           tasks_bin=fake_cli(tmp_path, 0, evaluated_result()))
    ctx = context({"evaluate": policy}, upstream)
    if skipped:
        with pytest.raises(AirflowSkipException, match="evaluate skipped: "):
            op.execute(ctx)
        return
    assert op.execute(ctx) == evaluated_result()
    extra = ctx["outlet_events"][asset].extra
    assert extra["report"] == "s3://b/c/y/eval/e/eval-report.json" and extra["subsets_better"] == 1
    lineage = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("s3://b", "c/y/hf"), ("s3://b", "d/dclm/val"), ("s3://b", "t/tasks.yaml"), ("s3://b", "t/lm.jsonl")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://b", "c/y/eval/e/eval-report.json")]


def test_the_mlflow_link_is_the_run_page_the_result_names():
    assert mlflow_run_url(evaluated_result()) == URL
    untracked = {**trained_result(), "mlflow": MlflowRun(status="unreachable", error="down").model_dump()}
    assert mlflow_run_url(untracked) == mlflow_run_url(trained_result()) == mlflow_run_url(None) == ""


def fake_node_cli(tmp_path: Path, statuses: dict[int, int], sleep: dict[int, int] | None = None) -> str:
    """A stand-in for `cpt-tasks train` on one node: notes its rank, arguments and what its /dev/shm holds, writes
    ``{"rank": R}`` to $CPT_RESULT_FILE, sleeps, exits with ``statuses[R]``."""
    script = tmp_path / "cpt-tasks"
    cases = "\n".join(f"  {rank}) status={status}; pause={(sleep or {}).get(rank, 0)} ;;"
                      for rank, status in statuses.items())
    script.write_text(f"""#!/bin/sh
rank=$(echo "$@" | sed -n 's/.*--node_rank \\([0-9]*\\).*/\\1/p')
case $rank in
{cases}
esac
touch /dev/shm/cpt-test-$rank && sleep 1
echo "argv: $@" > {tmp_path}/node-$rank.out
echo "shm: $(ls /dev/shm | grep cpt-test- | tr '\\n' ' ')" >> {tmp_path}/node-$rank.out
echo '{{"rank": '$rank'}}' > "$CPT_RESULT_FILE"
sleep $pause
exit $status
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_local_runner_starts_one_process_per_node_each_in_its_own_dev_shm(tmp_path):
    op = LocalStepOperator(task_id="train", arguments=["train", "--report", "r"], nodes="2", shm_size="64Mi",
                           tasks_bin=fake_node_cli(tmp_path, {0: 0, 1: 0}))
    assert op.execute(context()) == {"rank": 0}  # node 0's result
    for rank in (0, 1):
        out = (tmp_path / f"node-{rank}.out").read_text()
        assert f"--nnodes 2 --node_rank {rank} --master_addr 127.0.0.1 --master_port " in out
        assert "argv: train --report r" in out and "/cpt-nodes-" in out  # its own scratch
        assert out.splitlines()[-1].strip() == f"shm: cpt-test-{rank}"  # not the other node's
    ports = {(tmp_path / f"node-{r}.out").read_text().split("--master_port ")[1].split()[0] for r in (0, 1)}
    assert len(ports) == 1


@pytest.mark.parametrize(("statuses", "error"), [({0: 0, 1: 2}, AirflowFailException),
                                                 ({0: 0, 1: 1}, AirflowException)])
def test_local_runner_fails_all_nodes_with_the_first_failure(tmp_path, statuses, error):
    import time

    op = LocalStepOperator(task_id="train", arguments=["train"], nodes=2, shm_size="64Mi",
                           tasks_bin=fake_node_cli(tmp_path, statuses, sleep={0: 300}))
    started = time.monotonic()
    with pytest.raises(error) as raised:
        op.execute(context())
    assert time.monotonic() - started < 60  # node 0 was stopped, not waited for
    if error is AirflowException:
        assert not isinstance(raised.value, (AirflowFailException, AirflowSkipException))
