"""Starting the training processes: one plain process, or the Composer launcher (``composer -n N``) for N
processes (one per GPU; gloo on CPU). The parent cleans streaming's stale shared memory first (a process
killed mid-run leaves it behind) and forwards SIGTERM, so stopping the step stops its processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
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


def worker_argv(yaml_path: Path, mode: str, nprocs: int, logs: Path) -> list[str]:
    """The command line of the training processes."""
    entry = ["-m", WORKER, str(yaml_path), mode]
    if nprocs == 1:
        return [sys.executable, *entry]
    logs.mkdir(parents=True, exist_ok=True)  # the other ranks' output; rank 0's goes to stderr
    launcher = shutil.which("composer", path=str(Path(sys.executable).parent)) or "composer"
    return [launcher, "-n", str(nprocs), "--stdout", str(logs / "rank{rank}.stdout.log"),
            "--stderr", str(logs / "rank{rank}.stderr.log"), *entry]


def run_workers(argv: list[str], cwd: Path) -> int:
    """Run the training processes to the end; their output goes to this process's stderr (stdout is kept
    for the result line). Returns their exit status."""
    import cpt_tasks

    # the processes import this very cpt_tasks, installed or not (they start in the scratch folder)
    package_root = str(Path(cpt_tasks.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
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
