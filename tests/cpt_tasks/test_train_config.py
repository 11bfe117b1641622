"""`cpt-tasks train` without training: arguments, the run's name and folder, the generated LLM-Foundry config
(CPU and multi-GPU), finished-run and checkpoint discovery, and the user errors found before any process
starts (exit 2, naming the problem)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import call_cli

from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.documents import read_document, write_document
from cpt_tasks.documents.plan_docs import PlannedTokenizer
from cpt_tasks.documents.plan_docs import PlanRef
from cpt_tasks.documents.train_docs import FinishedRun, RunManifest
from cpt_tasks.documents.verify_docs import SubsetReport, VerifyReport
from cpt_tasks.layout import safe_run_id, training_run_name
from cpt_tasks.train.train_yaml import YamlInputs, build_yaml, train_length
from cpt_tasks.runs.status import RunPaths, checkpoints_after, find_finished_run, latest_checkpoint, run_paths

BASE = dict(report="r.json", model="m", save_root="/runs", run_id="x")


def test_dry_run_shows_the_defaults_and_parses_units():
    proc = call_cli("train", "--report", "s3://b/verify-report.json", "--model", "meta-llama/Llama-3.1-8B",
                    "--save_root", "s3://b/runs", "--run_id", "manual__1", "--nprocs", "8", "--max_duration",
                    "1_000_000tok", "--device_microbatch_size", "auto", "--dry-run", check=True)
    cfg = json.loads(proc.stdout)
    assert cfg["max_duration"] == "1000000tok" and cfg["device_microbatch_size"] == "auto"
    assert cfg["global_batch_size"] == 512 and cfg["warmup"] == "0.01dur" and cfg["precision"] == "auto"
    assert json.loads(call_cli("train", *sum(([f"--{k}", v] for k, v in BASE.items()), []), "--max_duration",
                               "null", "--dry-run", check=True).stdout)["max_duration"] is None
    assert json.loads(call_cli("train", "--report", "r", "--save_root", "/s", "--run_id", "x", "--dry-run",
                               check=True).stdout)["model"] == "meta-llama/Llama-3.1-8B"  # the base model


@pytest.mark.parametrize("flags,message", [
    (["--max_duration", "3ep"], "--max_duration: Value error, '3ep' is not a duration"),
    (["--max_duration", "0ba"], "--max_duration: Value error, must be more than 0"),
    (["--warmup", "1.5dur"], "--warmup: Value error, '1.5dur' is not a time"),
    (["--save_interval", "0ba"], "--save_interval: Value error, must be more than 0"),
    (["--global_batch_size", "6", "--nprocs", "4"], "global_batch_size (6) must be a multiple of nprocs (4)"),
    (["--global_batch_size", "8", "--nprocs", "4", "--device_microbatch_size", "4"],
     "device_microbatch_size (4) is larger than the batch of one device (2"),
    (["--device_microbatch_size", "0"], "--device_microbatch_size.constrained-int: Input should be greater"),
    (["--precision", "fp16"], "--precision: Input should be 'auto', 'amp_bf16' or 'fp32'"),
    (["--lr", "0"], "--lr: Input should be greater than 0"),
])
def test_bad_arguments_are_user_errors(flags, message):
    proc = call_cli("train", *sum(([f"--{k}", v] for k, v in BASE.items()), []), *flags, "--dry-run")
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_run_name_is_stable_safe_and_distinct():
    fingerprint = "ab" * 32
    assert training_run_name(fingerprint, "scheduled__2026-11-26") == "abababababababab-scheduled__2026-11-26"
    odd = safe_run_id("manual__2026-11-26T14:49:03.414223+00:00")
    assert odd.startswith("manual__2026-11-26T14-49-03.414223-00-00-") and len(odd) == 41 + 8
    assert safe_run_id("a:b") != safe_run_id("a+b")  # altered ids keep a hash of the original
    assert safe_run_id("a:b") == safe_run_id("a:b") and "{" not in safe_run_id("{run_name}")
    assert len(safe_run_id("x" * 500)) <= 48 + 9
    assert RunPaths("s3://b/runs", "n").hf == "s3://b/runs/n/hf"


def _report(out_roots: list[str], realized: int = 50 * 10**9, concat: int = 8192) -> VerifyReport:
    subsets = [SubsetReport(name=f"s{i}", status="ok", fingerprint=f"{i}" * 64, out_root=root, manifest="-",
                            proportion=0.5, planned_train_tokens=0, train_tokens=0, val_tokens=concat * i, share=0.5,
                            documents=None, exhausted=False, checks=[]) for i, root in enumerate(out_roots)]
    return VerifyReport(ok=True, plan=PlanRef(path="p", sha256="s", fingerprint="f" * 64), mix="m",
                        concat_tokens=concat, tokenizer=PlannedTokenizer(name="t", revision=None, sha256="s"),
                        total_tokens=realized, realized_train_tokens=realized, subsets=subsets, created_at="now",
                        code_version="0")


def test_duration_defaults_to_the_verified_tokens_and_warmup_follows_its_unit():
    report = _report(["/d/s0"], realized=2816, concat=128)
    length = train_length(TrainConfig(**BASE, global_batch_size=4, device_microbatch_size=2), report)
    assert (length.max_duration, length.final_step, length.tokens_per_step) == ("2816tok", 6, 512)
    length = train_length(TrainConfig(**BASE, global_batch_size=4, max_duration="10ba"), report)
    assert (length.max_duration, length.final_step) == ("10ba", 10)


def _where(cfg: TrainConfig, report: VerifyReport, run: RunPaths, scratch: Path, gpus: int) -> YamlInputs:
    return YamlInputs(run=run, length=train_length(cfg, report), model_dir="/m", tokenizer_dir="/t",
                      scratch=scratch, gpus=gpus)


def test_yaml_on_eight_gpus_shards_with_fsdp_in_bf16(tmp_path):
    cfg = TrainConfig(**BASE, nprocs=8, global_batch_size=64, warmup="1000ba", num_workers=8)
    report = _report(["s3://b/mix/s0", "/data/mix/s1"])
    built = build_yaml(cfg, report, _where(cfg, report, RunPaths("s3://b/runs", "n"), tmp_path, 8))
    assert built["precision"] == "amp_bf16" and built["model"]["init_device"] == "mixed"
    assert built["fsdp_config"]["sharding_strategy"] == "FULL_SHARD"
    assert built["fsdp_config"]["activation_checkpointing"] is True
    assert built["model"]["attn_implementation"] == "sdpa"
    assert built["max_duration"] == "50000000000tok" and built["max_seq_len"] == 8192
    assert built["scheduler"]["t_warmup"] == f"{1000 * 64 * 8192}tok"  # in max_duration's unit
    streams = built["train_loader"]["dataset"]["streams"]
    assert streams["s0"] == {"remote": "s3://b/mix/s0", "local": str(tmp_path / "data" / ("0" * 16) / "s0"),
                             "split": "train", "proportion": 0.5}
    assert streams["s1"] == {"remote": "/data/mix/s1", "local": str(tmp_path / "data" / ("1" * 16) / "s1"),
                             "split": "train", "proportion": 0.5}  # a local folder is copied too, never written
    assert [e["label"] for e in built["eval_loaders"]] == ["s1"]  # s0 has no val rows
    assert built["eval_loaders"][0]["dataset"]["split"] == "val"
    assert built["train_loader"]["num_workers"] == 8 and built["train_loader"]["persistent_workers"] is True
    assert built["callbacks"]["cpt_hf_export"] == {"save_folder": "s3://b/runs/n", "folder": "hf",
                                                   "precision": "bfloat16"}
    assert built["save_folder"] == "s3://b/runs/n/checkpoints" and built["autoresume"] is True
    assert Path(built["code_paths"][0]).name == "foundry_plugins.py" and Path(built["code_paths"][0]).is_file()
    assert yaml.safe_load(yaml.safe_dump(built)) == built


def test_yaml_on_the_cpu_is_plain(tmp_path):
    cfg = TrainConfig(**BASE, global_batch_size=4, device_microbatch_size=2, num_workers=0)
    built = build_yaml(cfg, _report(["/d/s0"]), _where(cfg, _report(["/d/s0"]), RunPaths("/runs", "n"), tmp_path, 0))
    assert built["precision"] == "fp32" and "fsdp_config" not in built and built["model"]["init_device"] == "cpu"
    assert built["train_loader"]["prefetch_factor"] is None and built["train_loader"]["persistent_workers"] is False
    assert "memory_monitor" not in built["callbacks"]


@pytest.fixture
def finished_manifest() -> RunManifest:
    """A run manifest as a finished run writes it (its plan is replaced per case)."""
    from cpt_tasks.documents.convert_docs import Framing
    from cpt_tasks.documents.train_docs import ModelSource, ReportRef

    return RunManifest(
        run_name="n", run_folder="/runs/n", run_id="r", plan=PlanRef(path="p", sha256="s", fingerprint="0" * 64),
        verify_report=ReportRef(location="r.json", sha256="s"), mix="m", concat_tokens=128,
        tokenizer=PlannedTokenizer(name="t", revision=None, sha256="s"),
        framing=Framing(bos_text="<|begin_of_text|>", eos_text="<|end_of_text|>", bos_id=128000, eos_id=128001),
        data=[], model=ModelSource(source="m"), config=TrainConfig(**BASE), settings={}, settings_fingerprint="s",
        train_yaml="/runs/n/train.yaml", world_size=1, gpus=0, planned_final_step=7, final_step=7,
        train_tokens=70, start_step=0, last_attempt="train", checkpoint=None, hf_export="/runs/n/hf",
        attempt_seconds=1.0, metrics={}, metrics_history="/runs/n/metrics.jsonl", loss_curve="/runs/n/loss.png",
        code_version={}, finished_at="now")


def test_finished_run_pointer_needs_its_manifest(tmp_path, finished_manifest):
    fingerprint = "c" * 64
    assert find_finished_run(str(tmp_path), fingerprint) is None
    paths = run_paths(str(tmp_path), fingerprint, "r")
    pointer = FinishedRun(run_name=paths.run_name, run_folder=paths.folder, run_manifest=paths.manifest,
                          plan_fingerprint=fingerprint, final_step=7, train_tokens=70, checkpoint=None,
                          hf_export=paths.hf, finished_at="now")
    write_document(paths.finished_pointer(fingerprint), pointer)
    assert find_finished_run(str(tmp_path), fingerprint) is None  # the run folder is gone
    other = finished_manifest.model_copy(update={"plan": PlanRef(path="p", sha256="s", fingerprint="d" * 64)})
    write_document(paths.manifest, other)
    assert find_finished_run(str(tmp_path), fingerprint) is None  # another plan's manifest
    Path(paths.manifest).write_text(json.dumps({"format": RunManifest.FORMAT, "plan": {"fingerprint": fingerprint}}))
    assert find_finished_run(str(tmp_path), fingerprint) is None  # not a valid run manifest
    write_document(paths.manifest, other.model_copy(update={"plan": PlanRef(path="p", sha256="s",
                                                                            fingerprint=fingerprint)}))
    assert find_finished_run(str(tmp_path), fingerprint) == pointer


def test_latest_checkpoint_and_the_files_after_it(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None
    for name in ("ep0-ba2-rank0.pt", "ep0-ba4-rank0.pt", "ep1-ba6-rank0.pt", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink("ep0-ba4-rank0.pt", tmp_path / "latest-rank0.pt")
    assert latest_checkpoint(str(tmp_path)) == (str(tmp_path / "ep0-ba4-rank0.pt"), 4)
    assert checkpoints_after(str(tmp_path), 4) == [str(tmp_path / "ep1-ba6-rank0.pt")]
    assert len(checkpoints_after(str(tmp_path), 0)) == 3


def _flags(report, model, tmp_path, **over):
    values = {"report": report, "model": model, "save_root": tmp_path / "runs", "run_id": "r",
              "global_batch_size": 4, "device_microbatch_size": 2, "num_workers": 0,
              "local_dir": tmp_path / "local", **over}
    return [str(x) for k, v in values.items() for x in (f"--{k}", v)]


def test_reports_that_are_not_passed_verifications_are_refused(mix_report, tiny_model, tmp_path):
    body = read_document(str(mix_report), VerifyReport)[0]
    failed = tmp_path / "failed.json"
    first = body.subsets[0]
    write_document(str(failed), body.model_copy(update={
        "ok": False, "subsets": [first.model_copy(update={"status": "failed"}), *body.subsets[1:]]}))
    plan_file = mix_report.parent / "plan.json"
    changed = tmp_path / "changed.json"
    write_document(str(changed), body.model_copy(update={
        "subsets": [first.model_copy(update={"fingerprint": "0" * 64}), *body.subsets[1:]]}))
    for report, message in [(failed, "verification failed (dclm); training runs only on verified data"),
                            (plan_file, "not a verification report"),
                            (tmp_path / "missing.json", "missing.json: no such file"),
                            (changed, "the data changed since verification, verify again")]:
        proc = call_cli("train", *_flags(report, tiny_model, tmp_path))
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_models_that_cannot_take_the_data_are_refused(mix_report, tiny_model, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    (small / "config.json").write_text(json.dumps({**json.loads((tiny_model / "config.json").read_text()),
                                                   "vocab_size": 1000}))
    (small / "model.safetensors").write_bytes(b"")
    short = tmp_path / "short"
    short.mkdir()
    (short / "config.json").write_text(json.dumps({"vocab_size": 1026, "max_position_embeddings": 64}))
    (short / "model.safetensors").write_bytes(b"")
    for model, message in [(tmp_path / "nothing", "no such model folder"),
                           (small, "vocabulary of 1000 ids is smaller than the tokenizer's 1026"),
                           (short, "context 64 is shorter than the data's rows (128)")]:
        proc = call_cli("train", *_flags(mix_report, model, tmp_path))
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    proc = call_cli("train", *_flags(mix_report, tiny_model, tmp_path, device_microbatch_size="auto"))
    assert proc.returncode == 2 and "auto needs FSDP (more than one GPU)" in proc.stderr
