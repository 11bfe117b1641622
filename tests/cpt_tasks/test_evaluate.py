"""`cpt-tasks evaluate` on the shared training run (the tiny Llama, 6 steps on the small mix): per-subset held-out
losses equal the same average computed here without LLM-Foundry or Composer, the trained model beats the base on
every subset it trained on, a gauntlet-style task list on S3 with relative examples paths is evaluated, MLflow
gets the evaluation's run with one run per model under it, a second call returns the report at once, another
run's evaluation reuses the base model's kept results (the same numbers), and bad task lists or a missing run
exit 2 naming what is wrong."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import boto3
import pytest
import yaml
from conftest import CONCAT, SUBSETS, call_cli
from train_helpers import tree_state

from cpt_tasks.documents import read_document
from cpt_tasks.documents.evaluate_docs import EvalReport
from cpt_tasks.documents.train_docs import RunManifest
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.evaluate.tasks import generate_default_tasks
from cpt_tasks.framing import LLAMA3_BOS, LLAMA3_EOS
from cpt_tasks.storage import upload_file

pytestmark = [pytest.mark.slow, pytest.mark.llmfoundry, pytest.mark.s3]
MC = [{"query": "The opposite of up is", "choices": [" down", " green", " seven"], "gold": 0},
      {"query": "Two plus two is", "choices": [" four", " blue", " cat"], "gold": 0},
      {"query": "def f(x): return", "choices": [" x", " the", " of"], "gold": 0}]


@pytest.fixture(scope="module")
def gauntlet(s3_server, trained_run, small_tokenizer_dir, tmp_path_factory) -> tuple[str, int]:
    """A task list on S3 in LLM-Foundry's gauntlet layout: relative dataset_uri values beside it (a held-out
    next-word task made from the val splits, and a small multiple-choice task); its URL and the next-word
    examples."""
    report = read_document(trained_run["report"], VerifyReport)[0]
    made = generate_default_tasks(report.subsets[:1], CONCAT, small_tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS, 20,
                                  tmp_path_factory.mktemp("tasks"))
    (task,) = made.tasks
    upload_file(task["dataset_uri"], "s3://cpt/gauntlet/local_data/next_word.jsonl")
    mc = tmp_path_factory.mktemp("mc") / "mc.jsonl"
    mc.write_text("".join(json.dumps(e) + "\n" for e in MC))
    upload_file(str(mc), "s3://cpt/gauntlet/local_data/choices.jsonl")
    tasks = {"icl_tasks": [
        {**task, "label": "next_word", "dataset_uri": "local_data/next_word.jsonl"},
        {"label": "choices", "dataset_uri": "local_data/choices.jsonl", "icl_task_type": "multiple_choice",
         "num_fewshot": [0, 1], "continuation_delimiter": ""}]}
    boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"]).put_object(
        Bucket="cpt", Key="gauntlet/tasks.yaml", Body=yaml.safe_dump(tasks).encode())
    return "s3://cpt/gauntlet/tasks.yaml", made.examples[task["label"]]


def evaluate_args(trained_run, *more: object) -> list[object]:
    return ["evaluate", "--report", trained_run["report"], "--save_root", trained_run["save_root"],
            "--run_id", "manual__shared", *more]


@pytest.fixture(scope="module")
def evaluated(trained_run, gauntlet, tmp_path_factory):
    """One evaluation with MLflow on (a file store); (its result, the report, the store)."""
    import os

    store = f"file://{tmp_path_factory.mktemp('mlflow')}"
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = store
    try:
        run = call_cli(*evaluate_args(trained_run, "--icl_tasks", gauntlet[0], "--local_dir",
                                      tmp_path_factory.mktemp("local")), check=True)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI") if saved is None else os.environ.update(MLFLOW_TRACKING_URI=saved)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return result, read_document(result["report"], EvalReport)[0], store, run


def heldout_loss(model_dir: str, val_split: str, pad_token_id: int | None) -> tuple[float, int]:
    """LanguageCrossEntropy over a val split without LLM-Foundry or Composer: the rows read with streaming, the
    model with transformers; sum of the token cross-entropies over the count of targets (labels = the row
    shifted left by one, the last position and pad tokens ignored, as the collator and the HF wrapper do)."""
    import numpy as np
    import torch
    from streaming import StreamingDataset
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    remote, split = val_split.rsplit("/", 1)
    ds = StreamingDataset(remote=remote, local=tempfile.mkdtemp(), split=split, shuffle=False, batch_size=1)
    rows = torch.from_numpy(np.stack([np.asarray(ds[i]["tokens"], dtype=np.int64) for i in range(ds.num_samples)]))
    targets = rows.clone()
    if pad_token_id is not None:
        targets[targets == pad_token_id] = -100
    targets = torch.cat([targets[:, 1:], torch.full((len(rows), 1), -100)], dim=1)
    with torch.no_grad():
        logits = model(input_ids=rows).logits
    total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), targets.reshape(-1),
                                              ignore_index=-100, reduction="sum").item()
    count = int((targets != -100).sum())
    return total / count, count


def test_losses_equal_the_same_average_computed_independently(evaluated, trained_run, small_tokenizer_dir):
    from streaming.base.util import clean_stale_shared_memory
    from transformers import AutoTokenizer

    _, report, _, _ = evaluated
    clean_stale_shared_memory()
    pad = AutoTokenizer.from_pretrained(str(small_tokenizer_dir)).pad_token_id
    models = {"base": report.base_model.path, "trained": report.hf_export}
    rows = {r.name: r for r in report.rows if r.metric == "LanguageCrossEntropy"}
    assert sorted(rows) == sorted(SUBSETS) == sorted(s.name for s in report.subsets)
    for subset in report.subsets:
        for role, model in models.items():
            value = getattr(rows[subset.name], role)
            loss, count = heldout_loss(model, subset.val_split, pad)
            assert value.n == count == (subset.val_tokens // CONCAT) * (CONCAT - 1), (subset.name, role)
            assert abs(value.value - loss) < 1e-5, (subset.name, role, value.value, loss)
    perplexity = {r.name: r for r in report.rows if r.metric == "LanguagePerplexity"}
    assert all(math.isclose(perplexity[n].trained.value, math.exp(rows[n].trained.value), rel_tol=1e-5) for n in rows)


def test_the_trained_model_beats_the_base_on_every_subset_it_trained_on(evaluated, trained_run):
    result, report, _, run = evaluated
    losses = [r for r in report.rows if r.metric == "LanguageCrossEntropy"]
    assert {r.verdict for r in losses} == {"better"}, [(r.name, r.base.value, r.trained.value) for r in losses]
    assert all(r.delta < 0 and r.delta == r.trained.value - r.base.value for r in losses)
    assert result["headline"]["subsets_better"] == len(SUBSETS) == result["headline"]["subsets"]
    manifest = read_document(trained_run["result"]["run_manifest"], RunManifest)[0]
    for row in losses:  # training's own last eval of the exported model: the same number
        assert abs(row.trained.value - manifest.metrics["eval_loss"][row.name]) < 1e-5
    for subset in SUBSETS:
        assert any(line.split()[:2] == [subset, "LanguageCrossEntropy"] and line.endswith("better")
                   for line in run.stderr.splitlines())  # the printed table


def test_the_task_list_on_s3_is_resolved_and_evaluated(evaluated, gauntlet):
    result, report, _, _ = evaluated
    source, examples = gauntlet
    assert report.tasks.source == source and report.tasks.sha256
    uris = {t.label: t.dataset_uri for t in report.tasks.tasks}
    assert uris == {"next_word": "s3://cpt/gauntlet/local_data/next_word.jsonl",
                    "choices": "s3://cpt/gauntlet/local_data/choices.jsonl"}
    icl = {r.name: r for r in report.rows if r.kind == "icl"}
    assert sorted(icl) == ["choices/0-shot", "choices/1-shot", "next_word/0-shot"]
    assert icl["choices/0-shot"].metric == "InContextLearningMultipleChoiceAccuracy"
    assert icl["choices/1-shot"].base.n == len(MC) and icl["next_word/0-shot"].base.n == examples > 0
    for row in icl.values():
        assert row.base.correct == round(row.base.value * row.base.n) and not row.lower_is_better
    assert set(result["task_files"]) == {source, *uris.values()} and result["val_splits"]
    listed = yaml.safe_load(Path(report.tasks.task_list).read_text())["icl_tasks"]
    assert [t["dataset_uri"] for t in listed] == list(uris.values())  # the resolved list, reusable as it is


def test_report_files_configs_and_the_mlflow_runs(evaluated):
    from mlflow import MlflowClient

    result, report, store, _ = evaluated
    folder = Path(result["report"]).parent
    assert folder.parent.name == "eval" and folder.name == report.eval_fingerprint[:16]
    assert Path(result["report_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = Path(result["report_md"]).read_text()
    assert "| dclm | LanguageCrossEntropy |" in markdown and "| choices/1-shot |" in markdown
    for role in ("base", "trained"):
        config = yaml.safe_load((folder / f"eval-{role}.yaml").read_text())
        (model,) = config["models"]
        assert "use_train_metrics" not in json.dumps(config)  # it would leave the eval loaders without metrics
        assert [loader["label"] for loader in config["eval_loaders"]] == SUBSETS
        assert {loader["dataset"]["split"] for loader in config["eval_loaders"]} == {"val"}
        assert config["precision"] == "fp32" and model["model_name"].endswith(role)
    client = MlflowClient(store)
    parent = client.get_run(result["mlflow"]["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["cpt.eval_fingerprint"] == report.eval_fingerprint
    assert parent.data.tags["cpt.plan_fingerprint"] == report.plan_fingerprint
    assert parent.data.metrics["delta/dclm/LanguageCrossEntropy"] < 0
    assert {"base/choices/0-shot/InContextLearningMultipleChoiceAccuracy", "trained/next_word/0-shot/"
            "InContextLearningLMAccuracy"} <= set(parent.data.metrics)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"eval-report.json", "eval-report.md",
                                                                           "eval.png"}
    children = client.search_runs([parent.info.experiment_id], f'tags.mlflow.parentRunId = "{parent.info.run_id}"')
    assert sorted(c.data.tags["cpt.model_role"] for c in children) == ["base", "trained"]
    for child in children:  # Composer's MLFlowLogger, inside the evaluation process
        role = child.data.tags["cpt.model_role"]
        row = next(r for r in report.rows if r.name == "math" and r.metric == "LanguageCrossEntropy")
        assert child.data.metrics["metrics/eval/math/LanguageCrossEntropy"] == pytest.approx(getattr(row, role).value)
    assert result["mlflow"]["run_url"].endswith(f"/#/experiments/{parent.info.experiment_id}/runs/"
                                                f"{parent.info.run_id}")


def test_a_second_call_returns_the_finished_report_at_once(evaluated, trained_run, gauntlet):
    result, report, _, _ = evaluated
    before = tree_state(trained_run["save_root"])
    again = call_cli(*evaluate_args(trained_run, "--icl_tasks", gauntlet[0]), check=True)
    second = json.loads(again.stdout.strip().splitlines()[-1])
    assert second["status"] == "already_complete" and second["report"] == result["report"]
    assert tree_state(trained_run["save_root"]) == before and "already finished" in again.stderr
    assert second["eval_fingerprint"] == report.eval_fingerprint


def test_another_run_s_evaluation_reuses_the_base_model_s_results_and_says_so(evaluated, trained_run, gauntlet,
                                                                               tmp_path):
    from mlflow import MlflowClient

    from conftest import environment
    from cpt_tasks.documents.evaluate_docs import BaseEvalResults

    result, report, store, _ = evaluated
    assert report.base_reused is None  # the first evaluation of this base on this data evaluated it
    body = json.loads(Path(trained_run["result"]["run_manifest"]).read_text())
    body["run_folder"] = str(tmp_path / "another-run")  # another run of the plan from the same base model
    (tmp_path / "run-manifest.json").write_text(json.dumps(body))
    with environment({"MLFLOW_TRACKING_URI": store}):
        again = call_cli(*evaluate_args(trained_run, "--run_manifest", tmp_path / "run-manifest.json", "--icl_tasks",
                                        gauntlet[0], "--local_dir", tmp_path / "local"), check=True)
    second = read_document(json.loads(again.stdout.strip().splitlines()[-1])["report"], EvalReport)[0]
    assert second.eval_fingerprint != report.eval_fingerprint and second.base_reused
    kept = read_document(second.base_reused, BaseEvalResults)[0]
    assert second.base_reused.startswith(f"{trained_run['save_root']}/base-evals/{kept.key[:16]}/")
    assert kept.evaluated_by == result["report"] and kept.base_model == report.base_model
    assert f"reusing its results on the same data, tasks and settings from {second.base_reused}" in again.stderr
    assert "trained" in second.seconds and "base" not in second.seconds  # the process evaluated the trained alone
    assert [r.model_dump() for r in second.rows] == [r.model_dump() for r in report.rows]  # the same numbers
    assert f"base results reused from `{second.base_reused}`" in Path(second.files["markdown"]).read_text()
    client = MlflowClient(store)
    base_run = next(r for r in client.search_runs(
        [second.mlflow.experiment_id], f'tags.mlflow.parentRunId = "{second.mlflow.run_id}"')
        if r.data.tags["cpt.model_role"] == "base")
    assert base_run.info.status == "FINISHED" and base_run.data.params["base_reused"] == second.base_reused
    row = next(r for r in report.rows if r.name == "math" and r.metric == "LanguageCrossEntropy")
    assert base_run.data.metrics["metrics/eval/math/LanguageCrossEntropy"] == pytest.approx(row.base.value)


def write_tasks(folder: Path, tasks: object, name: str = "tasks.yaml") -> Path:
    path = folder / name
    path.write_text(tasks if isinstance(tasks, str) else yaml.safe_dump({"icl_tasks": tasks}))
    (folder / "ok.jsonl").write_text('{"context": "a", "continuation": " b"}\n')
    return path


GOOD = {"label": "lm", "dataset_uri": "ok.jsonl", "icl_task_type": "language_modeling", "num_fewshot": [0]}
BAD_LISTS = {
    "no-dataset-uri": ([{k: v for k, v in GOOD.items() if k != "dataset_uri"}], "task 'lm' has no dataset_uri"),
    "unknown-type": ([{**GOOD, "icl_task_type": "summarization"}], "task 'lm': unknown icl_task_type 'summarization'"),
    "missing-file": ([{**GOOD, "dataset_uri": "absent.jsonl"}], "task 'lm': dataset_uri {folder}/absent.jsonl: "
                                                                 "no such file"),
    "bad-label": ([{**GOOD, "label": "a/b"}], "task 'a/b': a label may only hold"),
    "shots-not-a-list": ([{**GOOD, "num_fewshot": 5}], "task 'lm': num_fewshot must be a list"),
    "twice": ([GOOD, GOOD], "task 'lm' appears twice"),
    "older-gauntlet": ([{**GOOD, "icl_task_type": "question_answering"}],
                       "task 'lm': unknown icl_task_type 'question_answering'"),
    "num-beams": ([{**GOOD, "num_beams": 5}], "task 'lm': num_beams is no longer a task key"),
    "not-a-list": ("icl_tasks: lm\n", "expected a top-level icl_tasks list"),
}


@pytest.mark.parametrize("case", list(BAD_LISTS))
def test_a_bad_task_list_exits_2_naming_the_file_and_the_task(trained_run, tmp_path, case):
    tasks, message = BAD_LISTS[case]
    path = write_tasks(tmp_path, tasks)
    run = call_cli(*evaluate_args(trained_run, "--icl_tasks", path))
    assert run.returncode == 2 and f"--icl_tasks {path}: " + message.format(folder=tmp_path) in run.stderr, run.stderr


def test_missing_task_lists_and_examples_on_s3_exit_2(trained_run, s3_server, tmp_path):
    run = call_cli(*evaluate_args(trained_run, "--icl_tasks", "s3://cpt/nowhere/tasks.yaml"))
    assert run.returncode == 2 and "--icl_tasks s3://cpt/nowhere/tasks.yaml: no such file" in run.stderr
    upload_file(str(write_tasks(tmp_path, [{**GOOD, "dataset_uri": "gone.jsonl"}])), "s3://cpt/bad/tasks.yaml")
    run = call_cli(*evaluate_args(trained_run, "--icl_tasks", "s3://cpt/bad/tasks.yaml"))
    assert run.returncode == 2 and "task 'lm': dataset_uri s3://cpt/bad/gone.jsonl: no such file" in run.stderr


def test_no_finished_run_or_a_missing_export_exits_2(trained_run, tmp_path):
    run = call_cli("evaluate", "--report", trained_run["report"], "--save_root", tmp_path / "empty")
    assert run.returncode == 2 and "no finished training run of plan" in run.stderr
    assert f"under {tmp_path / 'empty'}; train first" in run.stderr
    body = json.loads(Path(trained_run["result"]["run_manifest"]).read_text())
    body["hf_export"] = str(tmp_path / "deleted-hf")
    (tmp_path / "run-manifest.json").write_text(json.dumps(body))
    run = call_cli(*evaluate_args(trained_run, "--run_manifest", tmp_path / "run-manifest.json"))
    assert run.returncode == 2 and f"{tmp_path / 'deleted-hf'} is missing or incomplete" in run.stderr
    run = call_cli(*evaluate_args(trained_run, "--run_manifest", tmp_path / "nothing.json"))
    assert run.returncode == 2 and f"--run_manifest {tmp_path / 'nothing.json'}: no such file" in run.stderr


def test_a_precision_this_machine_cannot_run_exits_2_before_staging_a_model(trained_run, tmp_path):
    from cpt_tasks.runs.workers import count_gpus

    if count_gpus():
        pytest.skip("amp_bf16 runs on this machine's GPU")
    run = call_cli(*evaluate_args(trained_run, "--precision", "amp_bf16", "--local_dir", tmp_path / "local"))
    assert run.returncode == 2 and "--precision amp_bf16 needs a GPU" in run.stderr
    assert not (tmp_path / "local").exists()  # nothing staged, no scratch made
