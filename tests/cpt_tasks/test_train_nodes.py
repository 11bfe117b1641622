"""`cpt-tasks train` over two nodes on the CPU (two processes on 127.0.0.1, gloo, each in its own /dev/shm,
Composer's FSDP2 with sharded checkpoints), as the local runner and an Indexed Job start them: SIGKILL of node 1
after the first checkpoint makes node 0 fail (exit 1, retried) within the bounded time instead of hanging; a
rerun of both resumes from that checkpoint and ends at the planned step; a third run is already complete at
once; nodes that are not given the same settings, that do not share the run's storage or that share one
/dev/shm all refuse (exit 2) before any process group exists."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from conftest import MIX_TOKENS, SUBSETS
from train_helpers import Nodes, train_flags, tree_state

from cpt_tasks.documents import read_document
from cpt_tasks.documents.train_docs import RunManifest
from cpt_tasks.runs.status import latest_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.llmfoundry]
DIST_TIMEOUT = 30
TEARDOWN = 60  # a failed rank's traceback, the interpreters' exit and the launcher's own (8-19 s measured)


def flags(report, model, tmp_path: Path, **over) -> list[str]:
    return train_flags(report, model, str(tmp_path / "runs"), "scheduled__nodes", tmp_path / "unused",
                       dist_timeout=DIST_TIMEOUT, **over)


def warning_lines(log: str) -> list[str]:
    """The log's warning lines, less transformers' own: LLM-Foundry's cache-warming load on the meta device reports
    the tied lm_head as "newly initialized" (the real load ties it), and with CI=true transformers also sends that
    notice through the root logger, as a "WARNING: transformers.modeling_utils" line."""
    return [line for line in log.splitlines() if "WARNING" in line and "WARNING: transformers." not in line]


@pytest.mark.timeout(1800)  # four runs of two nodes: ~90 s of imports each on 2 busy cores
def test_two_nodes_fail_together_resume_together_and_refuse_together(mix_report, tiny_model, tmp_path):
    same = flags(mix_report, tiny_model, tmp_path)
    planned = math.ceil(MIX_TOKENS / (4 * 128))  # 6 steps of 4 rows
    started = time.monotonic()
    killed = Nodes([same, same], 2, tmp_path, "killed")
    checkpoints = None
    deadline = time.monotonic() + 600
    while checkpoints is None or latest_checkpoint(checkpoints) is None:
        assert all(p.poll() is None for p in killed.procs), [killed.log(r)[-3000:] for r in (0, 1)]
        assert time.monotonic() < deadline, "no checkpoint in time"
        runs = list((tmp_path / "runs").glob("*-scheduled__nodes"))
        checkpoints = str(runs[0] / "checkpoints") if runs else None
        time.sleep(0.05)
    killed.kill(1)
    killed_at = time.monotonic()
    status = killed.procs[0].wait(timeout=DIST_TIMEOUT + TEARDOWN)  # no hang
    waited = time.monotonic() - killed_at
    assert status == 1, killed.log(0)[-3000:]  # transient: the retry resumes
    assert "a retry resumes from the latest checkpoint" in killed.log(0)
    location, step = latest_checkpoint(checkpoints)
    assert Path(location).name == f"ep0-ba{step}" and (Path(location) / ".metadata").is_file()
    assert sorted(p.name for p in Path(location).glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert 0 < step < planned
    print(f"node 0 exited {status} {waited:.1f} s after node 1 was killed at step {step} "
          f"({time.monotonic() - started:.0f} s after the start)")

    started = time.monotonic()
    store = f"file://{tmp_path / 'mlruns'}"  # tracked: node 0 opens the run, every node's processes log into it
    resumed = Nodes([same, same], 2, tmp_path, "resumed", env={"MLFLOW_TRACKING_URI": store})
    assert resumed.wait() == [0, 0], [resumed.log(r)[-3000:] for r in (0, 1)]
    print(f"resumed run: {time.monotonic() - started:.0f} s")
    result, other = resumed.result(0), resumed.result(1)
    assert result["status"] == "resumed" and result["start_step"] == step and result["final_step"] == planned
    assert f"[cpt-train] start step {step} ({step * 4 * 128:,} tokens), resumed from checkpoint" in resumed.log(0)
    assert other["status"] == "node_done" and other["run_manifest"] == result["run_manifest"]
    assert result["checkpoint"].endswith(f"/checkpoints/ep1-ba{planned}")
    manifest = read_document(result["run_manifest"], RunManifest)[0]
    assert (manifest.nodes, manifest.gpus_per_node, manifest.world_size, manifest.sharding_strategy) == \
        (2, 0, 2, "FULL_SHARD")
    assert manifest.settings["nnodes"] == 2 and manifest.start_step == step
    from mlflow import MlflowClient

    assert manifest.mlflow.status == "tracked" and not warning_lines(resumed.log(0) + resumed.log(1))
    tracked = MlflowClient(store).get_run(manifest.mlflow.run_id)
    assert tracked.info.status == "FINISHED" and tracked.data.tags["cpt.run_name"] == manifest.run_name
    assert "loss/train/total" in tracked.data.metrics  # logged by global rank 0 into node 0's run; no other run
    assert [r.info.run_id for r in MlflowClient(store).search_runs([manifest.mlflow.experiment_id])] == \
        [manifest.mlflow.run_id]
    history = [json.loads(line) for line in open(Path(result["run_folder"]) / "metrics.jsonl")]
    assert [r["step"] for r in history] == list(range(1, planned + 1))  # the killed attempt's steps included
    assert set(history[-1]["eval"]) == set(SUBSETS)
    export = Path(result["hf_export"])
    assert (export / "config.json").is_file() and len(list(export.glob("*.safetensors"))) == 1  # one full model
    assert not list(Path(result["run_folder"]).glob(".cpt-nodes-probe-*"))

    started = time.monotonic()
    written = [tmp_path / "runs", tmp_path / "local0", tmp_path / "local1"]
    before = tree_state(*written)
    again = Nodes([same, same], 2, tmp_path, "again")
    assert again.wait(timeout=300) == [0, 0], [again.log(r)[-3000:] for r in (0, 1)]
    print(f"already complete: {time.monotonic() - started:.0f} s")
    assert [again.result(r)["status"] for r in (0, 1)] == ["already_complete"] * 2
    assert tree_state(*written) == before  # neither node wrote a file: no config, no process started

    other_lr = flags(mix_report, tiny_model, tmp_path, lr=1e-3)
    refused = Nodes([same, other_lr], 2, tmp_path, "refused")
    assert refused.wait(timeout=300) == [2, 2], [refused.log(r)[-3000:] for r in (0, 1)]
    assert "was finished with other settings (lr 0.003 -> 0.001)" in refused.log(1)
    assert "node 1 refused to train" in refused.log(0)


@pytest.mark.timeout(600)
def test_nodes_given_other_options_refuse_before_training(mix_report, tiny_model, tmp_path):
    nodes = Nodes([flags(mix_report, tiny_model, tmp_path), flags(mix_report, tiny_model, tmp_path, lr=1e-3)], 2,
                  tmp_path, "options")
    assert nodes.wait(timeout=300) == [2, 2], [nodes.log(r)[-3000:] for r in (0, 1)]
    for rank in (0, 1):
        assert "option.lr differs: node 0 0.003, node 1 0.001" in nodes.log(rank)
    assert not list(tmp_path.rglob("train.yaml"))  # no node wrote a config, so none started training
    assert not list((tmp_path / "runs").rglob(".cpt-nodes-probe-*"))


AGREE = """
import sys
from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.errors import UserError
from cpt_tasks.train.agreement import node_agreement

rank, port, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cfg = TrainConfig(report="r", save_root=folder, run_id="x", nnodes=2, node_rank=rank, master_port=port, node_wait=60)
try:
    with node_agreement(cfg) as nodes:
        nodes.agree({"run_folder": folder, "decision": "train", "resume_step": 0})
except UserError as exc:
    print(exc)
    sys.exit(2)
"""


@pytest.mark.parametrize("case", ["node-local storage", "one /dev/shm"])
def test_nodes_that_do_not_share_storage_or_share_dev_shm_refuse(tmp_path, case):
    import subprocess
    import sys

    from cpt_pipeline.local_nodes import free_port_pair, private_shm_argv

    folder, port = tmp_path / "runs" / "run", free_port_pair()
    folder.mkdir(parents=True)
    # node 1 of "node-local storage" sees its own empty folder where node 0 sees the run folder
    hide = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs cpt-other-disk {tmp_path / "runs"} && exec "$@"', "sh"]
    wrap = {"node-local storage": [private_shm_argv(1 << 20), [*private_shm_argv(1 << 20), *hide]],
            "one /dev/shm": [[], []]}[case]
    procs = [subprocess.Popen([*wrap[rank], sys.executable, "-c", AGREE, str(rank), str(port), str(folder)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [2, 2], outputs
    expected = ("node 1 cannot read" if case == "node-local storage" else "node 1 shares node 0's /dev/shm")
    assert all(expected in out for out in outputs), outputs
    assert not list(folder.iterdir()) and not list(Path("/dev/shm").glob("cpt-nodes-*"))  # probes removed
