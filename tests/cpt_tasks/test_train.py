"""`cpt-tasks train` on the CPU with a tiny random Llama: the loss falls on a repeated batch and the Hugging Face
export is the trained model; a run killed after its first checkpoint resumes from it, ends at the planned step,
and a third run returns at once (with one process, the run that tests/conftest.py's ``trained_run`` shares)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import MIX_TOKENS, SUBSETS, make_verified, read_rows, run_cli
from train_helpers import kill_and_resume, run_train, train_flags, tree_state

from cpt_tasks.documents import read_document
from cpt_tasks.documents.train_docs import RunManifest
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.runs.status import find_finished_run

pytestmark = [pytest.mark.slow, pytest.mark.llmfoundry]
FALL = 3.0  # nats the loss falls over 16 steps on one repeated batch


@pytest.fixture(scope="module")
def repeated(tmp_path_factory, sample_dir, small_tokenizer_dir):
    """One subset of exactly one batch (2 rows of 128 tokens, no val): every step trains on the same rows."""
    root = tmp_path_factory.mktemp("repeated")
    report = make_verified(root, sample_dir, small_tokenizer_dir, subsets=["wiki"], total_tokens=256, concat_tokens=128,
                           val_fraction=0)
    return report, read_document(str(report), VerifyReport)[0]


def test_loss_falls_on_a_repeated_batch_and_the_export_is_the_trained_model(repeated, tiny_model, tmp_path):
    report, body = repeated
    flags = train_flags(report, tiny_model, str(tmp_path / "runs"), "manual__2026-11-26T10:00:00+00:00",
                        tmp_path / "local", max_duration="16ba", global_batch_size=2, lr=1e-2, save_interval="16ba")
    result, proc = run_train(flags)
    assert result["status"] == "trained" and result["start_step"] == 0
    assert result["final_step"] == 16 and result["train_tokens"] == 16 * 2 * 128
    run_id = "manual__2026-11-26T10:00:00+00:00"  # changed to be a folder name, so it gets its own hash
    assert result["run_name"] == body.plan.fingerprint[:16] + "-manual__2026-11-26T10-00-00-00-00-" \
        + hashlib.sha256(run_id.encode()).hexdigest()[:8]
    history = [json.loads(line) for line in open(tmp_path / "runs" / result["run_name"] / "metrics.jsonl")]
    losses = [r["loss"] for r in history]
    assert [r["step"] for r in history] == list(range(1, 17))
    assert all(math.isfinite(x) for x in losses)
    # a random model starts near ln(vocabulary) (6.93 for the small tokenizer's 1,026 ids); only the same rows
    # again and again fall this far in 16 steps
    vocabulary = json.loads((tiny_model / "config.json").read_text())["vocab_size"]
    assert abs(losses[0] - math.log(vocabulary)) < 0.3 and losses[-1] < losses[0] - FALL
    assert max(losses[-5:]) < min(losses[:5]) - FALL / 2
    assert "[cpt-train] step 16/16" in proc.stderr and "start step 0 (0 tokens)" in proc.stderr

    manifest = read_document(result["run_manifest"], RunManifest)[0]
    assert manifest.plan.fingerprint == result["plan_fingerprint"] == body.plan.fingerprint
    assert manifest.final_step == manifest.planned_final_step == 16
    assert [d.subset for d in manifest.data] == ["wiki"]
    assert manifest.data[0].fingerprint == body.subsets[0].fingerprint
    assert manifest.verify_report.sha256 and manifest.code_version["llm-foundry"] == "0.22.0"
    assert manifest.metrics["final_train_loss"] == losses[-1]
    assert (manifest.framing.bos_id, manifest.framing.eos_id) == (1024, 1025)  # as the data recorded
    assert open(result["loss_curve"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert find_finished_run(str(tmp_path / "runs"), result["plan_fingerprint"]).run_manifest == \
        result["run_manifest"]

    generated = yaml.safe_load(open(tmp_path / "runs" / result["run_name"] / "train.yaml"))
    stream = generated["train_loader"]["dataset"]["streams"]["wiki"]
    out_root = body.subsets[0].out_root
    assert {k: stream[k] for k in ("remote", "split", "proportion")} == {"remote": out_root, "split": "train",
                                                                         "proportion": 1.0}
    assert not stream["local"].startswith(out_root)  # streaming's copies go to scratch, not the verified data
    assert sorted(p.name for p in (Path(out_root) / "train").iterdir()) == \
        sorted(["index.json", *((s.get("zip_data") or s["raw_data"])["basename"] for s in json.loads(
            (Path(out_root) / "train" / "index.json").read_text())["shards"])])  # nothing written beside
    assert generated["max_seq_len"] == 128 and generated["autoresume"] is True
    assert "eval_loaders" not in generated  # the mix has no val rows

    rows = read_rows(body.subsets[0].out_root + "/train")
    export_loss, generated_ids = _evaluate_export(result["hf_export"], rows)
    assert abs(export_loss - losses[-1]) < 0.5  # the trained weights, not the initial ones (~6.9)
    assert generated_ids.shape[1] == 16 + 8


def _evaluate_export(folder, rows):
    """Loss of the exported model on the training rows, and 8 greedily generated tokens after 16 of row 0."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 1026 and tokenizer.bos_token_id == 1024
    ids = torch.tensor(rows, dtype=torch.long)
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
        generated = model.generate(ids[:1, :16], max_new_tokens=8, do_sample=False, pad_token_id=128001)
    return loss, generated


@pytest.mark.parametrize("nprocs", [1, 2])
def test_killed_run_resumes_from_its_checkpoint_and_a_finished_run_returns_at_once(mix_report, tiny_model,
                                                                                  tmp_path, request, nprocs):
    if nprocs == 1:  # the shared run (tests/conftest.py) is this one: one process, killed and run again
        run = request.getfixturevalue("trained_run")
    else:
        run = kill_and_resume(mix_report, tiny_model, tmp_path, "scheduled__1", nprocs=nprocs)
    save_root, local_dir, run_id, step = run["save_root"], run["local_dir"], run["run_id"], run["killed_at"]
    planned = math.ceil(MIX_TOKENS / (4 * 128))  # 6 steps: the verified total, in tokens
    assert run["fingerprint"] == read_document(str(mix_report), VerifyReport)[0].plan.fingerprint
    assert 0 < step < planned and run["finished_when_killed"] is None  # killed mid-run, after a checkpoint

    result, stderr = run["result"], run["stderr"]
    assert result["status"] == "resumed" and result["start_step"] == step
    assert f"[cpt-train] start step {step} ({step * 4 * 128:,} tokens), resumed from checkpoint" in stderr
    assert result["final_step"] == planned and result["train_tokens"] == planned * 4 * 128
    history = [json.loads(line) for line in open(f"{result['run_folder']}/metrics.jsonl")]
    assert [r["step"] for r in history] == list(range(1, planned + 1))  # the killed attempt's steps included
    assert set(history[-1]["eval"]) == set(SUBSETS)
    assert result["checkpoint"].endswith(f"-ba{planned}-rank0.pt")  # epoch 1: 22 rows make 5 full steps
    assert read_document(result["run_manifest"], RunManifest)[0].world_size == nprocs

    before = tree_state(save_root, local_dir)
    again, proc = run_train(run["flags"])
    assert again["status"] == "already_complete" and again["final_step"] == planned
    assert again["run_manifest"] == result["run_manifest"] and again["start_step"] is None
    assert tree_state(save_root, local_dir) == before  # no process started, no file written again
    other = run_cli("train", *train_flags(mix_report, tiny_model, save_root, run_id, local_dir, nprocs=nprocs,
                                          lr=1e-3))
    assert other.returncode == 2 and "was finished with other settings (lr 0.003 -> 0.001)" in other.stderr
