"""Several training nodes on one machine (light core: no torch): what the local runner does for ``nodes`` > 1,
so the multi-node code path runs on a CPU (gloo over 127.0.0.1).

Each node is one ``cpt-tasks train --nnodes N --node_rank R --master_addr 127.0.0.1 --master_port P
--local_dir <its own>`` in its own mount namespace with a private tmpfs ``/dev/shm`` (``unshare``): nodes on
one host would otherwise collide in streaming's shared memory, whose names are only unique per host. Where
``unshare`` cannot make that namespace, :func:`check_private_shm` says so instead of letting nodes collide.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cpt_tasks.errors import NO_RETRY_EXITS

STOP_GRACE = 30.0  # seconds the other nodes get after SIGTERM (Composer's launcher cleans up), then SIGKILL
DEFAULT_SHM = 1 << 30
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTORS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
            "Ti": 2**40}


class PrivateShmUnavailable(RuntimeError):
    """This machine cannot give a process its own /dev/shm."""


def shm_bytes(quantity: str | None) -> int:
    """A Kubernetes quantity (the shm_size Param, e.g. ``1Gi``) in bytes."""
    found = _QUANTITY.match((quantity or "").strip())
    if not found:
        return DEFAULT_SHM
    return int(float(found.group(1)) * _FACTORS[found.group(2)])


def private_shm_argv(shm_size: int) -> list[str]:
    """The argv prefix that runs a command in a new mount namespace with a private tmpfs /dev/shm of
    ``shm_size`` bytes (as root; otherwise in a user namespace where the user is root)."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    script = f'mount -t tmpfs -o size={shm_size} cpt-node-shm /dev/shm && exec "$@"'
    return ["unshare", *user, "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


def check_private_shm() -> None:
    """Raise :class:`PrivateShmUnavailable` with what to do when :func:`private_shm_argv` cannot work here."""
    try:
        proc = subprocess.run([*private_shm_argv(1 << 20), "true"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise PrivateShmUnavailable("`unshare` (util-linux) is not installed: nodes > 1 on one machine need it to "
                                    "give every node its own /dev/shm") from None
    if proc.returncode != 0:
        raise PrivateShmUnavailable(
            "nodes > 1 on one machine need a private /dev/shm per node, and `unshare --mount` failed here "
            f"({proc.stderr.strip() or proc.returncode}); allow unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1) or run as root, or train with nodes = 1")


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port P with P and P + 1 both free: the rendezvous and the nodes' agreement."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind((host, 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind((host, port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def node_argv(train_argv: list[str], nnodes: int, rank: int, port: int, local_dir: Path,
              shm_size: int) -> list[str]:
    """One node's command: ``train_argv`` (``cpt-tasks train ...``) with its rank, the rendezvous on 127.0.0.1
    and its own scratch, in its own /dev/shm."""
    flags = ["--nnodes", str(nnodes), "--node_rank", str(rank), "--master_addr", "127.0.0.1",
             "--master_port", str(port), "--local_dir", str(local_dir)]
    return [*private_shm_argv(shm_size), *train_argv, *flags]


def combined_status(statuses: list[int | None]) -> int:
    """The step's exit status from its nodes': a final one (2, 3) if any node gave it, else the first failure."""
    final = [s for s in statuses if s in NO_RETRY_EXITS]
    failed = [s for s in statuses if s]
    return final[0] if final else failed[0] if failed else 0


class LocalNodes:
    """N node processes started together; their output interleaved line by line as ``[node R] ...``; the
    first node to fail stops the others (as the Job's pod failure policy does on Kubernetes)."""

    def __init__(self, argvs: list[list[str]], env: list[dict[str, str]], emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=e,
                                       start_new_session=True, bufsize=1) for argv, e in zip(argvs, env)]
        self._lock = threading.Lock()
        self._readers = [threading.Thread(target=self._relay, args=(rank, proc), daemon=True)
                         for rank, proc in enumerate(self.procs)]
        for reader in self._readers:
            reader.start()

    def _relay(self, rank: int, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            with self._lock:
                self.emit(f"[node {rank}] {line.rstrip()}")

    def wait(self) -> list[int | None]:
        """Wait for every node; when one fails, stop the rest. Each node's exit status."""
        while True:
            statuses = [proc.poll() for proc in self.procs]
            if all(s is not None for s in statuses):
                break
            if any(s for s in statuses):
                failed = next(r for r, s in enumerate(statuses) if s)
                self.emit(f"node {failed} exited {statuses[failed]}: stopping the other nodes")
                self.stop()
                break
            time.sleep(0.2)
        for reader in self._readers:
            reader.join(timeout=10)
        return [proc.wait() for proc in self.procs]

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM every running node's process group, SIGKILL what is left after ``grace`` seconds."""
        for proc in self.procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        for proc in self.procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
