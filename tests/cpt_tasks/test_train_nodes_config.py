"""Multi-node training without training: the options and their checks, the generated LLM-Foundry config over
several nodes (HYBRID_SHARD on GPUs, FSDP2 on the CPU, sharded checkpoints), the launcher's command line,
sharded checkpoints found and cleaned up locally and on S3, the run manifest's new fields, and the result as a
Kubernetes termination message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import call_cli
from test_train_config import BASE, _report, _where, finished_manifest  # noqa: F401 (a fixture)

from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.documents.train_docs import RunManifest, TrainResult
from cpt_tasks.errors import UserError
from cpt_tasks.train.train_yaml import build_yaml, settings, sharding_strategy, train_length
from cpt_tasks.train.launch_command import Rendezvous, worker_argv
from cpt_pipeline.local_nodes import combined_status, free_port_pair, node_argv, shm_bytes
from cpt_tasks.runs.status import RunPaths, checkpoints_after, latest_checkpoint, remove_checkpoint


@pytest.mark.parametrize("flags,message", [
    (["--nnodes", "2", "--node_rank", "2"], "node_rank (2) must be less than nnodes (2)"),
    (["--nnodes", "2", "--nprocs", "4", "--global_batch_size", "12", "--device_microbatch_size", "1"],
     "global_batch_size (12) must be a multiple of nprocs x nnodes (8)"),
    (["--nnodes", "2", "--global_batch_size", "4", "--device_microbatch_size", "4"],
     "device_microbatch_size (4) is larger than the batch of one device (2 = global_batch_size / nprocs x nnodes)"),
    (["--sharding_strategy", "HYBRID_SHARD"], "HYBRID_SHARD replicates across nodes: it needs nnodes > 1"),
    (["--sharding_strategy", "ZERO3"], "--sharding_strategy: Input should be 'auto', 'FULL_SHARD'"),
    (["--nnodes", "0"], "--nnodes: Input should be greater than or equal to 1"),
    (["--dist_timeout", "1"], "--dist_timeout: Input should be greater than or equal to 10"),
])
def test_bad_node_options_are_user_errors(flags, message):
    proc = call_cli("train", *sum(([f"--{k}", v] for k, v in BASE.items()), []), *flags, "--dry-run")
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_strategy_and_device_checks():
    from cpt_tasks.train.train_job import _check_device

    nodes = dict(BASE, nnodes=4, nprocs=8, global_batch_size=64)
    assert sharding_strategy(TrainConfig(**nodes), gpus=8) == "HYBRID_SHARD"
    assert sharding_strategy(TrainConfig(**nodes, sharding_strategy="SHARD_GRAD_OP"), gpus=8) == "SHARD_GRAD_OP"
    assert sharding_strategy(TrainConfig(**dict(nodes, nprocs=1)), gpus=1) == "FULL_SHARD"  # nothing to replicate
    assert sharding_strategy(TrainConfig(**dict(nodes, nprocs=1)), gpus=0) == "FULL_SHARD"  # FSDP2 on the CPU
    assert sharding_strategy(TrainConfig(**dict(BASE, nprocs=8, global_batch_size=64)), gpus=8) == "FULL_SHARD"
    assert sharding_strategy(TrainConfig(**BASE), gpus=1) is None and sharding_strategy(TrainConfig(**BASE), 0) is None
    _check_device(TrainConfig(**dict(nodes, nprocs=1), device_microbatch_size="auto"), gpus=8)  # FSDP over nodes
    for cfg, gpus, message in [
        (TrainConfig(**dict(nodes, nprocs=1), sharding_strategy="HYBRID_SHARD"), 0, "needs GPUs; on the CPU only"),
        (TrainConfig(**BASE, sharding_strategy="FULL_SHARD"), 1, "this run does not shard"),
    ]:
        with pytest.raises(UserError, match=message):
            _check_device(cfg, gpus)


def test_yaml_over_nodes_of_gpus_is_hybrid_sharded(tmp_path):
    cfg = TrainConfig(**BASE, nnodes=4, nprocs=8, global_batch_size=64, dist_timeout=900)
    report = _report(["s3://b/mix/s0"])
    built = build_yaml(cfg, report, _where(cfg, report, RunPaths("s3://b/runs", "n"), tmp_path, 8))
    fsdp = built["fsdp_config"]
    assert (fsdp["sharding_strategy"], fsdp["data_parallel_replicate_degree"], fsdp["data_parallel_shard_degree"]) \
        == ("HYBRID_SHARD", 4, 8)  # replicate across the 4 nodes, shard over each node's 8 GPUs
    assert fsdp["state_dict_type"] == "sharded" and fsdp["mixed_precision"] == "PURE"
    assert built["dist_timeout"] == 900 and built["model"]["init_device"] == "mixed" and built["autoresume"] is True
    full = TrainConfig(**BASE, nnodes=4, nprocs=8, global_batch_size=64, sharding_strategy="FULL_SHARD")
    fsdp = build_yaml(full, report, _where(full, report, RunPaths("s3://b/runs", "n"), tmp_path, 8))["fsdp_config"]
    assert fsdp["sharding_strategy"] == "FULL_SHARD" and "data_parallel_replicate_degree" not in fsdp
    one = TrainConfig(**BASE, nprocs=8, global_batch_size=64)
    fsdp = build_yaml(one, report, _where(one, report, RunPaths("s3://b/runs", "n"), tmp_path, 8))["fsdp_config"]
    assert fsdp["state_dict_type"] == "full" and fsdp["sharding_strategy"] == "FULL_SHARD"  # one node: as before


def test_yaml_over_cpu_nodes_is_fsdp2_with_sharded_checkpoints(tmp_path):
    cfg = TrainConfig(**BASE, nnodes=2, global_batch_size=4, device_microbatch_size=2, dist_timeout=30)
    report = _report(["/d/s0"])
    built = build_yaml(cfg, report, _where(cfg, report, RunPaths("/runs", "n"), tmp_path, 0))
    assert built["fsdp_config"] == {"state_dict_type": "sharded", "mixed_precision": "PURE",
                                    "activation_checkpointing": False}
    assert built["model"]["init_device"] == "cpu" and built["precision"] == "fp32" and built["dist_timeout"] == 30


def test_settings_hold_the_world_shape_only_over_several_nodes():
    report = _report(["/d/s0"], realized=2816, concat=128)
    one = TrainConfig(**BASE, global_batch_size=4, device_microbatch_size=2)
    assert "nnodes" not in settings(one, train_length(one, report))  # single-node runs resume as before
    two = TrainConfig(**BASE, nnodes=2, nprocs=2, global_batch_size=4, device_microbatch_size=1)
    assert {k: v for k, v in settings(two, train_length(two, report)).items() if k in ("nnodes", "nprocs")} == \
        {"nnodes": 2, "nprocs": 2}


def test_each_node_runs_the_launcher_with_the_worlds_shape(tmp_path):
    argv = worker_argv(tmp_path / "train.yaml", "train", 8, tmp_path / "logs", Rendezvous(4, 2, "job-0.nodes", 29500))
    assert Path(argv[0]).name == "composer"
    assert argv[1:13] == ["--world_size", "32", "--node_rank", "2", "--base_rank", "16", "--master_addr",
                          "job-0.nodes", "--master_port", "29500", "-n", "8"]
    assert argv[-3:] == ["cpt_tasks.train.train_worker", str(tmp_path / "train.yaml"), "train"]
    one = worker_argv(tmp_path / "train.yaml", "export", 1, tmp_path / "logs", Rendezvous(2, 1, "h", 1234))
    assert one[1:13] == ["--world_size", "2", "--node_rank", "1", "--base_rank", "1", "--master_addr", "h",
                         "--master_port", "1234", "-n", "1"]  # one process per node still goes through the launcher
    assert "--world_size" not in worker_argv(tmp_path / "train.yaml", "train", 2, tmp_path / "logs")
    # the launcher's ranks start after the parent cleaned streaming's shared memory; one plain process cleans it
    assert "--clean_shm" not in argv + one + worker_argv(tmp_path / "train.yaml", "train", 2, tmp_path / "logs")
    alone = worker_argv(tmp_path / "train.yaml", "train", 1, tmp_path / "logs")
    assert alone[1:] == ["-m", "cpt_tasks.train.train_worker", str(tmp_path / "train.yaml"), "train", "--clean_shm"]


def test_local_node_commands_and_statuses(tmp_path):
    argv = node_argv(["cpt-tasks", "train", "--report", "r"], 2, 1, 4000, tmp_path / "n1", shm_bytes("64Mi"))
    assert argv[0] == "unshare" and f"size={64 << 20}" in " ".join(argv)
    assert argv[-14:] == ["cpt-tasks", "train", "--report", "r", "--nnodes", "2", "--node_rank", "1",
                          "--master_addr", "127.0.0.1", "--master_port", "4000", "--local_dir", str(tmp_path / "n1")]
    assert (shm_bytes("1Gi"), shm_bytes("2G"), shm_bytes("512"), shm_bytes("lots")) == (1 << 30, 2 * 10**9, 512, 1 << 30)
    assert combined_status([0, 0]) == 0 and combined_status([1, 2]) == 2 and combined_status([143, 1]) == 143
    assert combined_status([0, 3]) == 3
    port = free_port_pair()
    assert 0 < port < 65535


def _sharded(folder: Path, step: int, ranks: int = 2, complete: bool = True) -> Path:
    checkpoint = folder / f"ep{step // 5}-ba{step}"
    checkpoint.mkdir(parents=True)
    for rank in range(ranks):
        (checkpoint / f"__{rank}_0.distcp").write_bytes(b"x")
    if complete:
        (checkpoint / ".metadata").write_bytes(b"m")
    return checkpoint


def test_sharded_checkpoints_are_found_and_a_killed_attempts_removed(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None
    first, second = _sharded(tmp_path, 2), _sharded(tmp_path, 4)
    half = _sharded(tmp_path, 6, ranks=1, complete=False)  # a killed attempt's: one rank's shard, no index
    os.symlink(first.name, tmp_path / "latest-sharded-rank0")
    assert latest_checkpoint(str(tmp_path)) == (str(first), 2)
    os.replace(tmp_path / "latest-sharded-rank0", tmp_path / "old")
    os.symlink(second.name, tmp_path / "latest-sharded-rank0")
    assert latest_checkpoint(str(tmp_path)) == (str(second), 4)
    assert checkpoints_after(str(tmp_path), 4) == [str(half)]
    for location in checkpoints_after(str(tmp_path), 4):
        remove_checkpoint(location)
    assert not half.exists() and second.exists() and first.exists()
    (second / ".metadata").unlink()
    assert latest_checkpoint(str(tmp_path)) is None  # a pointer at a folder without its index is not trusted


@pytest.mark.s3
def test_sharded_checkpoints_on_s3(s3_server):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    prefix = "runs/n-sharded/checkpoints"
    for key in ("ep0-ba2/.metadata", "ep0-ba2/__0_0.distcp", "ep0-ba2/__1_0.distcp", "ep1-ba8/__1_0.distcp"):
        client.put_object(Bucket="cpt", Key=f"{prefix}/{key}", Body=b"x")
    checkpoints = f"s3://cpt/{prefix}"
    assert latest_checkpoint(checkpoints) is None
    # Composer's pointer object holds the checkpoint's key prefix, without the bucket
    client.put_object(Bucket="cpt", Key=f"{prefix}/latest-sharded-rank0.symlink", Body=f"{prefix}/ep0-ba2".encode())
    assert latest_checkpoint(checkpoints) == (f"{checkpoints}/ep0-ba2", 2)
    assert checkpoints_after(checkpoints, 2) == [f"{checkpoints}/ep1-ba8"]
    remove_checkpoint(f"{checkpoints}/ep1-ba8")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="cpt", Prefix=prefix)["Contents"]}
    assert f"{prefix}/ep1-ba8/__1_0.distcp" not in keys and f"{prefix}/ep0-ba2/.metadata" in keys
    client.delete_object(Bucket="cpt", Key=f"{prefix}/ep0-ba2/.metadata")
    assert latest_checkpoint(checkpoints) is None


def test_run_manifests_of_one_node_still_read(finished_manifest):
    body = json.loads(finished_manifest.model_dump_json())
    assert (body["nodes"], body["gpus_per_node"], body["sharding_strategy"]) == (1, 0, None)
    old = {k: v for k, v in body.items() if k not in ("nodes", "gpus_per_node", "sharding_strategy")}
    old["gpus"] = 8  # what run manifests before multi-node training called it
    manifest = RunManifest.model_validate(old)
    assert (manifest.nodes, manifest.gpus_per_node, manifest.sharding_strategy) == (1, 8, None)
    with pytest.raises(ValueError):
        RunManifest.model_validate({**body, "gpuz": 8})


def test_result_as_a_termination_message_fits_in_4_kib(tmp_path, monkeypatch):
    import cpt_tasks.cli as cli

    log = tmp_path / "termination-log"
    monkeypatch.setattr(cli, "TERMINATION_LOG", str(log))
    monkeypatch.setenv("CPT_RESULT_FILE", str(log))
    result = TrainResult(status="trained", run_name="n", run_folder="s3://b/runs/n", checkpoint=None,
                         hf_export="s3://b/runs/n/hf", run_manifest="s3://b/runs/n/run-manifest.json",
                         plan_fingerprint="f" * 64, final_step=10, train_tokens=10,
                         metrics={"eval_loss": {"subset": 1.0}})
    cli.write_result(result)
    assert json.loads(log.read_text()) == json.loads(result.model_dump_json())
    cli.write_result(result.model_copy(update={"metrics": {f"m{i}": float(i) for i in range(400)}}))
    text = log.read_text()
    assert len(text.encode()) <= 4096 and json.loads(text)["metrics"] == {} and json.loads(text)["final_step"] == 10
