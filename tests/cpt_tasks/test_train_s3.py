"""`cpt-tasks train` with the model, checkpoints and outputs on the S3-compatible server on 127.0.0.1: a run
whose training finished but whose export and manifest were lost resumes from the S3 checkpoint and only
exports; a finished run is found by `find_finished_run` and returns at once."""

from __future__ import annotations

import json
import shutil

import boto3
import pytest
from train_helpers import run_train, train_flags, tree_state

from cpt_tasks.documents import read_document
from cpt_tasks.documents.train_docs import RunManifest
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.storage import store_for
from cpt_tasks.runs.status import find_finished_run, latest_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.llmfoundry, pytest.mark.s3]


def test_checkpoints_on_s3_resume_an_interrupted_export(s3_server, mix_report, tiny_model, tmp_path):
    store, prefix = store_for("s3://cpt/models/tiny")  # one client for the model's files
    for path in tiny_model.iterdir():
        store.upload(str(path), f"{prefix}/{path.name}")
    fingerprint = read_document(str(mix_report), VerifyReport)[0].plan.fingerprint
    flags = train_flags(mix_report, "s3://cpt/models/tiny", "s3://cpt/runs", "r-s3", tmp_path / "local",
                        max_duration="2ba")
    result, _ = run_train(flags, env=s3_server)
    steps = 2
    name = f"{fingerprint[:16]}-r-s3"
    assert result["status"] == "trained" and result["final_step"] == steps
    assert result["run_folder"] == f"s3://cpt/runs/{name}" and result["hf_export"] == f"s3://cpt/runs/{name}/hf"
    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="cpt", Prefix="runs/")["Contents"]}
    run = f"runs/{name}/"
    assert {run + "checkpoints/ep0-ba2-rank0.pt",
            run + "checkpoints/latest-rank0.pt.symlink", run + "hf/config.json", run + "hf/model.safetensors",
            run + "hf/tokenizer.json", run + "train.yaml", run + "metrics.jsonl", run + "loss.png",
            run + "run-manifest.json", f"runs/finished/{fingerprint}.json"} <= keys
    assert latest_checkpoint(f"s3://cpt/runs/{name}/checkpoints") == (result["checkpoint"], steps)
    assert find_finished_run("s3://cpt/runs", fingerprint).run_folder == result["run_folder"]
    manifest = read_document(f"s3://cpt/{run}run-manifest.json", RunManifest)[0]
    assert manifest.model.model_dump() == {"source": "s3://cpt/models/tiny", "path": None, "revision": None}

    # the pod died after training: no manifest, a half export, a stray later checkpoint, an empty new disk
    client.delete_object(Bucket="cpt", Key=run + "run-manifest.json")
    client.delete_object(Bucket="cpt", Key=run + "hf/model.safetensors")
    client.put_object(Bucket="cpt", Key=run + "checkpoints/ep1-ba99-rank0.pt", Body=b"half written")
    shutil.rmtree(tmp_path / "local")
    assert find_finished_run("s3://cpt/runs", fingerprint) is None
    again, proc = run_train(flags, env=s3_server)
    assert again["status"] == "resumed" and again["start_step"] == steps and again["final_step"] == steps
    assert "training finished, exporting only" in proc.stderr and "removing 1 checkpoint(s)" in proc.stderr
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="cpt", Prefix=run)["Contents"]}
    assert run + "hf/model.safetensors" in keys and run + "checkpoints/ep1-ba99-rank0.pt" not in keys
    history = [json.loads(line) for line in
               client.get_object(Bucket="cpt", Key=run + "metrics.jsonl")["Body"].read().splitlines()]
    assert [r["step"] for r in history] == list(range(1, steps + 1))  # restored from the checkpoint

    objects = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket="cpt", Prefix=run)["Contents"]}
    local = tree_state(tmp_path / "local")
    third, proc = run_train(flags, env=s3_server)
    assert third["status"] == "already_complete"
    assert {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket="cpt", Prefix=run)["Contents"]} == objects
    assert tree_state(tmp_path / "local") == local  # nothing staged, written or launched
