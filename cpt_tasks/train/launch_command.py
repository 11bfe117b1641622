"""The training processes' command line: one plain process (which cleans streaming's stale shared memory
itself), or the Composer launcher (``composer -n N``) for N processes (one per GPU; gloo on CPU), and on each
node of a multi-node run the launcher with the world's shape and node 0's address (``composer --world_size N*G
--node_rank R --base_rank R*G -n G --master_addr …``). Starting them and reading their result is the run layer's
(``cpt_tasks.runs.workers``)."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

WORKER = "cpt_tasks.train.train_worker"


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
        return [sys.executable, *entry, "--clean_shm"]  # it cleans up itself: the parent imports no torch
    logs.mkdir(parents=True, exist_ok=True)  # the other local ranks' output; local rank 0's goes to stderr
    launcher = shutil.which("composer", path=str(Path(sys.executable).parent)) or "composer"
    world = []
    if rendezvous is not None:
        world = ["--world_size", str(rendezvous.nnodes * nprocs), "--node_rank", str(rendezvous.node_rank),
                 "--base_rank", str(rendezvous.node_rank * nprocs), "--master_addr", rendezvous.master_addr,
                 "--master_port", str(rendezvous.master_port)]
    return [launcher, *world, "-n", str(nprocs), "--stdout", str(logs / "rank{rank}.stdout.log"),
            "--stderr", str(logs / "rank{rank}.stderr.log"), *entry]
