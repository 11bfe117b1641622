"""Starting the training processes: one plain process, or the Composer launcher (``composer -n N``) for N
processes (one per GPU; gloo on CPU), and on each node of a multi-node run the launcher with the world's shape
and node 0's address (``composer --world_size N*G --node_rank R --base_rank R*G -n G --master_addr …``). The
parent cleans streaming's stale shared memory first (a process killed mid-run leaves it behind) and forwards
SIGTERM, so stopping the step stops its processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

WORKER = "cpt_tasks.train.worker"


def count_gpus() -> int:
    """CUDA devices this process sees."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def clean_stale_shared_memory() -> None:
    """Remove shared memory that killed streaming datasets left behind (else the next run may hang or fail)."""
    from streaming.base.util import clean_stale_shared_memory as clean

    clean()


@dataclass(frozen=True)
class Rendezvous:
    """Where this node sits in a multi-node world, and where node 0's rendezvous is."""

    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int


def worker_argv(yaml_path: Path, mode: str, nprocs: int, logs: Path,
                rendezvous: Rendezvous | None = None) -> list[str]:
    """The command line of the training processes (of this node)."""
    entry = ["-m", WORKER, str(yaml_path), mode]
    if nprocs == 1 and rendezvous is None:
        return [sys.executable, *entry]
    logs.mkdir(parents=True, exist_ok=True)  # the other local ranks' output; local rank 0's goes to stderr
    launcher = shutil.which("composer", path=str(Path(sys.executable).parent)) or "composer"
    world = []
    if rendezvous is not None:
        world = ["--world_size", str(rendezvous.nnodes * nprocs), "--node_rank", str(rendezvous.node_rank),
                 "--base_rank", str(rendezvous.node_rank * nprocs), "--master_addr", rendezvous.master_addr,
                 "--master_port", str(rendezvous.master_port)]
    return [launcher, *world, "-n", str(nprocs), "--stdout", str(logs / "rank{rank}.stdout.log"),
            "--stderr", str(logs / "rank{rank}.stderr.log"), *entry]


def run_workers(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
    """Run the training processes to the end; their output goes to this process's stderr (stdout is kept
    for the result line). Returns their exit status."""
    import cpt_tasks

    # the processes import this very cpt_tasks, installed or not (they start in the scratch folder)
    package_root = str(Path(cpt_tasks.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           **(env or {})}
    print(f"[cpt-train] launching: {' '.join(argv)}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=2)  # fd 2: whatever stderr is
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main else None
    if in_main:
        signal.signal(signal.SIGTERM, lambda signum, _frame: proc.send_signal(signum))
    try:
        return proc.wait()
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
