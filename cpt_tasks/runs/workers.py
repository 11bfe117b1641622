"""Starting a job's worker processes and collecting their typed result: "launch the workers, then read the
result file or raise". The parent forwards SIGTERM, so stopping the step stops its processes; the workers'
output goes to this process's stderr (stdout is kept for the job's result line)."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TypeVar

from cpt_tasks.documents import find_document
from cpt_tasks.runs.log import say

D = TypeVar("D")
RESULT_FILE = "worker-result.json"  # the result document a job's workers leave in its scratch folder


GPU_DEVICE_NODES = ("/dev/nvidia*", "/dev/kfd", "/dev/dxg")  # NVIDIA's driver, ROCm's, WSL's GPU


def count_gpus() -> int:
    """CUDA devices this process sees (torch's count). On Linux without any GPU device node CUDA can see none:
    0 at once, without importing torch (seconds at every job's start on a CPU machine)."""
    if sys.platform.startswith("linux") and not any(glob.glob(pattern) for pattern in GPU_DEVICE_NODES):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def clean_stale_shared_memory() -> None:
    """Remove shared memory that killed streaming datasets left behind (else the next run may hang or fail)."""
    from streaming.base.util import clean_stale_shared_memory as clean

    clean()


def run_workers(argv: list[str], cwd: Path, job: str, env: dict[str, str] | None = None) -> int:
    """Run the worker processes to the end; their output goes to this process's stderr (stdout is kept
    for the result line). Returns their exit status."""
    import cpt_tasks

    # the processes import this very cpt_tasks, installed or not (they start in the scratch folder)
    package_root = str(Path(cpt_tasks.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           **(env or {})}
    say(job, f"launching: {' '.join(argv)}")
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


def launch(argv: list[str], cwd: Path, job: str, *, what: str, retry: str, result_file: Path | None,
           result: type[D], env: dict[str, str] | None = None) -> D | None:
    """Run the workers to the end and return their result document read from ``result_file`` (None when
    ``result_file`` is None: this node's workers write none). RuntimeError (retried) when they exit non-zero or
    leave no valid result: ``what`` names them, ``retry`` says what a retry does."""
    if result_file is not None:
        result_file.unlink(missing_ok=True)
    status = run_workers(argv, cwd, job, env)
    if status != 0:
        raise RuntimeError(f"{what} exited with status {status}; {retry}")
    if result_file is None:
        return None
    outcome = find_document(str(result_file), result)
    if outcome is None:
        raise RuntimeError(f"{what} ended without a valid result file {result_file}")
    return outcome
