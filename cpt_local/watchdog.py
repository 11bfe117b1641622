"""Ends a process tree when the process that owns it dies, even by SIGKILL (it cannot clean up then).

The owner starts :class:`Watchdog`: ``python -m cpt_local.watchdog`` in a session of its own, reading a
pipe whose only write end the owner holds. The owner names what to end (``guard``): a process, or a session
(its leader and every process in it, e.g. a command started with ``start_new_session``). When the owner dies
the pipe reaches end-of-file and the watchdog freezes (SIGSTOP) every named process, every process of the named
sessions and all their descendants, until no new one appears, then SIGKILLs them all and exits. A clean owner
calls ``release()`` after stopping its tree itself. ``set_parent_death_signal`` (a ``preexec_fn``) covers the
moment between starting a child and naming it. Used by ``make airflow``'s supervisor and the UI tests' server.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

import psutil

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
FREEZE_ROUNDS = 50  # rounds of SIGSTOP (each finds what the previous ones' targets forked) before SIGKILL


def set_parent_death_signal(parent: int, sig: int = signal.SIGKILL) -> None:
    """In a child between fork and exec (``preexec_fn=partial(set_parent_death_signal, os.getpid())``): get
    ``sig`` when the thread that forked it ends (so start children from the thread that lives as long as the
    parent: the main one); if ``parent`` has already gone, die now. No-op off Linux."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


class Watchdog:
    """The owner's side: starts the watchdog process and tells it what to end when this process dies."""

    def __init__(self) -> None:
        read_end, write_end = os.pipe()  # not inheritable: no other child of the owner keeps it open
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=read_end,
                                         stdout=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(read_end)
        self.pipe = os.fdopen(write_end, "w", buffering=1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def guard(self, pid: int, session: bool = False) -> None:
        """End process ``pid`` (and, with ``session``, every process of the session it leads) if the owner
        dies; the process's start time tells it from a later one that reuses the pid."""
        try:
            started = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            return
        self.send(f"{'session' if session else 'pid'} {pid} {started!r}")

    def release(self) -> None:
        """The owner has stopped its tree itself: the watchdog exits without ending anything."""
        self.send("release")
        self.pipe.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        """End what was named now, as if this process had died."""
        self.pipe.close()

    def send(self, line: str) -> None:
        try:
            self.pipe.write(line + "\n")
        except (BrokenPipeError, ValueError):  # the watchdog is gone, or released
            pass


def same_process(pid: int, started: float) -> psutil.Process | None:
    """The process ``pid`` if it is still the one that started at ``started``."""
    try:
        proc = psutil.Process(pid)
        return proc if abs(proc.create_time() - started) < 0.01 else None
    except psutil.Error:
        return None


def targets(pids: dict[int, float], sessions: set[int]) -> dict[int, psutil.Process]:
    """Every live process to end now: those named, those in the named sessions, and their descendants."""
    found = {pid: proc for pid, started in pids.items() if (proc := same_process(pid, started))}
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) in sessions:
                found[proc.pid] = proc
        except (ProcessLookupError, PermissionError):
            pass
    for proc in list(found.values()):
        try:
            found.update((child.pid, child) for child in proc.children(recursive=True))
        except psutil.Error:
            pass
    found.pop(os.getpid(), None)
    return found


def end_all(pids: dict[int, float], sessions: set[int]) -> None:
    """Freeze the whole tree (nothing can fork any more), then kill it."""
    frozen: dict[int, psutil.Process] = {}
    for _ in range(FREEZE_ROUNDS):
        new = {pid: proc for pid, proc in targets(pids, sessions).items() if pid not in frozen}
        if not new:
            break
        for proc in new.values():
            try:
                proc.suspend()
            except psutil.Error:
                pass
        frozen.update(new)
    for proc in frozen.values():
        try:
            proc.kill()
        except psutil.Error:
            pass


def watch(lines) -> bool:
    """Read the owner's lines until the pipe ends; then end what it named (True), unless it released (False)."""
    pids: dict[int, float] = {}
    sessions: set[int] = set()
    for line in lines:
        kind, *rest = line.split()
        if kind == "release":
            return False
        pid, started = int(rest[0]), float(rest[1])
        pids[pid] = started
        if kind == "session":
            sessions.add(pid)
    # A session's id stays its leader's pid while any member lives (Linux does not reuse it meanwhile).
    end_all(pids, sessions)
    return True


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # a terminal's Ctrl-C or hang-up is for the owner to handle
    watch(sys.stdin)


if __name__ == "__main__":
    main()
