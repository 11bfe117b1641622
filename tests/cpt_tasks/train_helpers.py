"""Shared pieces of the training tests: the CLI's train command and a run killed (SIGKILL, whole process
group) once its first checkpoint exists, then run again. The verified mix and the tiny model are fixtures of
tests/conftest.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import CPT, ROOT, run_cli

from cpt_tasks.runs.status import latest_checkpoint


def train_flags(report: Path, model: Path | str, save_root: str, run_id: str, local_dir: Path, **over) -> list[str]:
    """`cpt-tasks train` flags for a small CPU run (4 rows per step, checkpoint every 2 steps)."""
    values = {"report": report, "model": model, "save_root": save_root, "run_id": run_id,
              "global_batch_size": 4, "device_microbatch_size": 2, "lr": 3e-3, "warmup": "2ba",
              "eval_interval": "1dur", "save_interval": "2ba", "num_workers": 0, "log_interval": 1,
              "local_dir": local_dir, **over}
    return [str(x) for key, value in values.items() for x in (f"--{key}", value)]


def run_train(flags: list[str], env: dict | None = None) -> tuple[dict, subprocess.CompletedProcess]:
    """Run `cpt-tasks train`; (the result parsed from the last stdout line, the process)."""
    proc = run_cli("train", *flags, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


def kill_after_first_checkpoint(flags: list[str], checkpoints: str, log: Path, env: dict | None = None,
                                timeout: float = 400) -> None:
    """Start `cpt-tasks train`, SIGKILL its whole process group once a checkpoint is complete."""
    with open(log, "w") as err:
        proc = subprocess.Popen([*CPT, "train", *flags], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while latest_checkpoint(checkpoints) is None:
                assert proc.poll() is None, f"training ended (exit {proc.returncode}) before its first " \
                                            f"checkpoint:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no checkpoint in time"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def kill_and_resume(report: Path, model: Path | str, root: Path, run_id: str, env: dict | None = None,
                    **over) -> dict:
    """A run of `cpt-tasks train` (``train_flags`` under ``root``, with ``over``) killed once its first checkpoint
    exists, then run again to its end: its flags and folders, what the killed attempt left (the latest checkpoint
    and step, the plan's finished-run pointer, its log) and the rerun's result and stderr."""
    from cpt_tasks.documents import read_document
    from cpt_tasks.documents.verify_docs import VerifyReport
    from cpt_tasks.runs.status import find_finished_run

    save_root, local_dir = str(root / "runs"), root / "local"
    flags = train_flags(report, model, save_root, run_id, local_dir, **over)
    fingerprint = read_document(str(report), VerifyReport)[0].plan.fingerprint
    checkpoints = f"{save_root}/{fingerprint[:16]}-{run_id}/checkpoints"
    kill_after_first_checkpoint(flags, checkpoints, root / "killed.log", env=env)
    location, step = latest_checkpoint(checkpoints)
    finished = find_finished_run(save_root, fingerprint)
    result, proc = run_train(flags, env=env)
    return {"flags": flags, "save_root": save_root, "local_dir": str(local_dir), "run_id": run_id,
            "fingerprint": fingerprint, "killed_at": step, "killed_checkpoint": location,
            "finished_when_killed": finished, "killed_log": (root / "killed.log").read_text(),
            "result": result, "stderr": proc.stderr}


class Nodes:
    """The nodes of one multi-node run started together on this machine, each `cpt-tasks train --node_rank R`
    in its own /dev/shm (what the local runner starts), each with its own log; no node stops the others."""

    def __init__(self, flags: list[str], nnodes: int, base: Path, name: str, env: dict | None = None) -> None:
        from cpt_pipeline.local_nodes import free_port_pair, node_argv

        port = free_port_pair()
        self.logs = [base / f"{name}-node{rank}.log" for rank in range(nnodes)]
        self.procs = []
        for rank in range(nnodes):
            argv = node_argv([*CPT, "train", *flags[rank]], nnodes, rank, port, base / f"local{rank}", 1 << 30)
            with open(self.logs[rank], "w") as log:
                self.procs.append(subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                                   env={**os.environ, **(env or {})}, start_new_session=True))

    def wait(self, timeout: float = 900) -> list[int]:
        deadline = time.monotonic() + timeout
        try:
            return [proc.wait(timeout=max(1.0, deadline - time.monotonic())) for proc in self.procs]
        finally:
            self.kill()

    def kill(self, rank: int | None = None) -> None:
        """SIGKILL the process group of one node (or of every node still running)."""
        for index, proc in enumerate(self.procs):
            if (rank is None or index == rank) and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def log(self, rank: int) -> str:
        return self.logs[rank].read_text()

    def result(self, rank: int) -> dict:
        """The node's result: the last line of its output that is JSON."""
        lines = [line for line in self.log(rank).splitlines() if line.startswith("{")]
        assert lines, self.log(rank)[-3000:]
        return json.loads(lines[-1])


def tree_state(*roots: Path | str) -> dict[str, int]:
    """Every file under the local folders ``roots`` with its modification time (ns): equal before and after a
    call, the call wrote nothing there."""
    return {str(p): p.stat().st_mtime_ns for root in roots for p in sorted(Path(root).rglob("*")) if p.is_file()}
