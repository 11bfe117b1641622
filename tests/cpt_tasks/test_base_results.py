"""The base model's kept results (cpt_tasks.evaluate.base_results), without running an evaluation: the key
names the model by its files' contents (or its hub commit), the tasks by their examples' hashes and the config
without this evaluation's own paths and names; a kept file of another key, or no valid one, is never trusted.
(tests/cpt_tasks/test_evaluate.py reuses kept results for real.)"""

from __future__ import annotations

import copy

from cpt_tasks.documents import write_document
from cpt_tasks.documents.evaluate_docs import BaseEvalResults, MetricValue
from cpt_tasks.documents.train_docs import ModelSource
from cpt_tasks.evaluate.base_results import base_eval_location, base_identity, base_key, find_base_results, \
    portable_config, tasks_identity
from cpt_tasks.evaluate.tasks import TaskList


def test_a_model_folder_is_named_by_its_files_contents_a_hub_model_by_its_commit(tmp_path):
    (tmp_path / "config.json").write_text('{"vocab_size": 8}')
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "README.md").write_text("not a weight")
    first = base_identity(tmp_path, None)
    assert sorted(first["files"]) == ["config.json", "model.safetensors"]
    (tmp_path / "README.md").write_text("changed")
    assert base_identity(tmp_path, None) == first
    (tmp_path / "model.safetensors").write_bytes(b"\x01" * 64)  # new weights, same size
    assert base_identity(tmp_path, None) != first
    assert base_identity(tmp_path, "0123abc") == {"revision": "0123abc"}


def test_tasks_are_named_by_their_examples_not_where_this_evaluation_wrote_them():
    def tasks(path: str, digest: str | None) -> TaskList:
        return TaskList(source="default", tasks=[{"label": "heldout_math", "dataset_uri": path, "num_fewshot": [0],
                                                  "icl_task_type": "language_modeling"}],
                        hashes={"heldout_math": digest})

    assert tasks_identity(tasks("/tmp/a/icl/x.jsonl", "ab")) == tasks_identity(tasks("/tmp/b/icl/x.jsonl", "ab"))
    assert tasks_identity(tasks("/tmp/a/icl/x.jsonl", "ab")) != tasks_identity(tasks("/tmp/a/icl/x.jsonl", "cd"))
    hub = tasks_identity(tasks("hf://org/set", None))  # no file to hash: its URI names it
    assert hub[0]["dataset_uri"] == "hf://org/set" and hub != tasks_identity(tasks("hf://org/other", None))


CONFIG = {"run_name": "r-eval-1-base", "seed": 17, "max_seq_len": 128, "device_eval_batch_size": 8,
          "precision": "fp32", "code_paths": ["/x/mlflow_logger.py"],
          "models": [{"model_name": "r-eval-1-base", "model": {"name": "hf_causal_lm",
                                                                "pretrained_model_name_or_path": "/scratch1/base"},
                      "tokenizer": {"name": "/scratch1/tok", "kwargs": {"model_max_length": 128}}}],
          "eval_subset_num_batches": -1, "icl_tasks": "/scratch1/icl-tasks.yaml",
          "eval_loaders": [{"name": "text", "label": "math", "dataset": {"remote": "/data/math", "split": "val",
                                                                         "local": "/scratch1/data/math"}}],
          "loggers": {"cpt_mlflow": {"run_id": "1"}}}


def test_the_config_is_kept_without_this_evaluation_s_names_and_paths():
    other = copy.deepcopy(CONFIG)
    other["run_name"] = other["models"][0]["model_name"] = "s-eval-2-base"
    other["models"][0]["model"]["pretrained_model_name_or_path"] = "/scratch2/base"
    other["eval_loaders"][0]["dataset"]["local"] = "/scratch2/data/math"
    other["icl_tasks"], other["loggers"] = "/scratch2/icl-tasks.yaml", {}
    assert portable_config(other) == portable_config(CONFIG)
    for key, value in (("device_eval_batch_size", 4), ("seed", 18), ("precision", "amp_bf16")):
        assert portable_config({**CONFIG, key: value}) != portable_config(CONFIG), key
    elsewhere = copy.deepcopy(CONFIG)
    elsewhere["eval_loaders"][0]["dataset"]["remote"] = "/data/other-math"
    assert portable_config(elsewhere) != portable_config(CONFIG)


def test_kept_results_of_another_key_or_an_invalid_file_are_never_trusted(tmp_path):
    key = base_key({"model": {"revision": "a"}})
    assert key != base_key({"model": {"revision": "b"}})
    location = base_eval_location(str(tmp_path), key)
    assert location == f"{tmp_path}/base-evals/{key[:16]}/base-eval.json"
    assert find_base_results(location, key) is None  # nothing kept yet
    body = BaseEvalResults(key=key, inputs={"model": {"revision": "a"}}, base_model=ModelSource(source="m"),
                           metrics={"metrics/eval/math/LanguageCrossEntropy": MetricValue(value=2.5, n=127)},
                           seconds=3.0, evaluated_by="/runs/r/eval/1/eval-report.json", created_at="now")
    write_document(location, body)
    assert find_base_results(location, key) == body
    assert find_base_results(location, "0" * 64) is None  # another key's (a 16-digit prefix collision)
    (tmp_path / "base-evals" / key[:16] / "base-eval.json").write_text('{"format": "cpt-pipeline/base-eval/v1"}')
    assert find_base_results(location, key) is None  # invalid: evaluated again, rewritten
