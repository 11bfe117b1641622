"""A small process supervisor for the local Airflow (``make airflow``): it starts long-lived commands, each in
its own session, stays the ancestor of everything they start (a Linux child subreaper, so orphans come back to
it), and on SIGINT, SIGTERM or SIGHUP stops the whole tree: SIGTERM to each command, a few seconds' grace, then
SIGKILL to every process of the tree that is left (grandchildren and processes that left their group
included). If it is killed itself (SIGKILL, the OOM killer: no clean-up possible), a
:mod:`~cpt_local.watchdog` ends the tree: every command's session and every descendant it has reported.
A pid file lets :func:`stop_running` end it from another shell. Generic: no Airflow import."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import psutil

from cpt_local.watchdog import Watchdog, set_parent_death_signal
from cpt_tasks.runs.log import teller

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children (Linux); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def describe(proc: psutil.Process) -> str:
    """``pid N: command line`` (shortened), for messages about processes left behind."""
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())[:120]}"
    except psutil.Error:
        return f"pid {proc.pid}"


def is_alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie has ended; only its exit status waits to be collected)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Supervisor:
    """Run ``first`` (argvs run one after the other to completion, e.g. a database migration), then
    ``commands`` (name -> argv) with ``env`` until a stop signal or until one of them exits; then stop every
    process of the tree. ``on_tick`` is called about twice a second while all run (e.g. a readiness
    banner); ``grace`` is how long the commands get to end after SIGTERM before everything left is killed."""

    def __init__(self, commands: Mapping[str, list[str]], env: Mapping[str, str], pid_file: Path,
                 grace: float = 5.0, on_tick: Callable[[], None] | None = None, cwd: Path | None = None,
                 first: list[list[str]] | None = None):
        self.first = list(first or [])
        self.commands = dict(commands)
        self.env = dict(env)
        self.pid_file = pid_file
        self.grace = grace
        self.on_tick = on_tick
        self.cwd = cwd
        self.procs: dict[str, subprocess.Popen] = {}
        self.seen: dict[int, psutil.Process] = {}
        self.signals: list[int] = []
        self.watchdog: Watchdog | None = None

    def run(self) -> int:
        """Start the commands and supervise them; return 0 after a stop signal, 1 if a command exited first.
        From the main thread only (signal handlers; the children's parent-death signal follows the thread)."""
        check_not_running(self.pid_file)
        become_subreaper()
        previous = {sig: signal.signal(sig, self.request_stop) for sig in STOP_SIGNALS}
        write_pid_file(self.pid_file)
        status = 0
        self.watchdog = Watchdog()
        try:
            for argv in self.first:
                if self.signals:
                    break
                code = self.run_to_end(argv)
                if code:
                    say(f"stopping: {' '.join(argv[-2:])} exited {code}")
                    status = 1
                    break
            for name, argv in self.commands.items():
                if self.signals or status:
                    break
                self.procs[name] = self.start(argv)
            while not self.signals and not status:
                ended = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
                if ended:
                    say(f"stopping: {', '.join(f'{n} exited {rc}' for n, rc in ended.items())}")
                    status = 1
                    break
                self.remember_tree()
                self.reap_orphans()
                if self.on_tick is not None:
                    self.on_tick()
                time.sleep(0.5)
            if self.signals:
                say(f"{signal.Signals(self.signals[0]).name}: stopping (again to kill at once)")
        finally:
            left = self.stop_tree()
            if left:
                self.watchdog.close()  # it ends what is left once more
            else:
                self.watchdog.release()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            remove_pid_file(self.pid_file)
        if left:
            say("still running after SIGKILL: " + "; ".join(left))
            return 1
        say("stopped")
        return status

    def start(self, argv: list[str]) -> subprocess.Popen:
        """Start ``argv`` in a session of its own (a terminal's Ctrl-C reaches only this supervisor), killed
        when this process dies (its parent-death signal until the watchdog knows its session)."""
        proc = subprocess.Popen(argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=partial(set_parent_death_signal, os.getpid()))
        self.watchdog.guard(proc.pid, session=True)
        return proc

    def run_to_end(self, argv: list[str]) -> int | None:
        """Run ``argv`` to its end; None when a stop signal came first (it is then stopped with the tree)."""
        self.procs["first"] = proc = self.start(argv)
        while proc.poll() is None:
            if self.signals:
                return None
            time.sleep(0.2)
        del self.procs["first"]
        return proc.returncode

    def request_stop(self, signum, frame) -> None:
        self.signals.append(signum)

    def remember_tree(self) -> list[psutil.Process]:
        """Note every descendant now (task processes come and go; the watchdog is told of each); return them."""
        try:
            tree = [p for p in psutil.Process().children(recursive=True) if p.pid != self.watchdog.pid]
        except psutil.NoSuchProcess:
            return []
        for proc in tree:
            if proc.pid not in self.seen:
                self.seen[proc.pid] = proc
                self.watchdog.guard(proc.pid)
        return tree

    def reap_orphans(self) -> None:
        """Collect the exit status of ended orphans that were handed to this subreaper (not our Popens)."""
        ours = {p.pid for p in self.procs.values()} | {self.watchdog.pid}
        for child in psutil.Process().children():
            if child.pid in ours:
                continue
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    os.waitpid(child.pid, os.WNOHANG)
            except (psutil.NoSuchProcess, ChildProcessError):
                pass

    def alive(self) -> list[psutil.Process]:
        """Every process of the tree still running: descendants now, those seen before, and anything still in
        the sessions the commands were started in."""
        self.remember_tree()
        sessions = {p.pid for p in self.procs.values()}
        for proc in psutil.process_iter():
            try:
                if proc.pid not in self.seen and os.getsid(proc.pid) in sessions:
                    self.seen[proc.pid] = proc
            except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
                pass
        return [p for p in self.seen.values() if is_alive(p)]

    def stop_tree(self) -> list[str]:
        """SIGTERM to each command, wait up to ``grace`` (a further stop signal cuts it short), SIGKILL to
        whatever of the tree is left; return descriptions of processes that survived even that."""
        self.remember_tree()
        signalled = len(self.signals)
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and len(self.signals) <= signalled and self.alive():
            self.reap()
            time.sleep(0.2)
        for sig_round in range(2):
            left = self.alive()
            if not left:
                break
            if sig_round == 0:
                say(f"killing what is left after {self.grace:.0f}s: " + "; ".join(describe(p)[:60] for p in left))
            for proc in left:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(left, timeout=5)
            self.reap()
        self.reap()
        return [describe(p) for p in self.alive()]

    def reap(self) -> None:
        for proc in self.procs.values():
            proc.poll()
        self.reap_orphans()


say = teller("airflow")


def read_pid_file(pid_file: Path) -> psutil.Process | None:
    """The running supervisor the pid file names, or None (no file, or a stale one: that pid has ended or
    is now another process)."""
    try:
        record = json.loads(pid_file.read_text())
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record["create_time"])) > 1 or not is_alive(proc):
            return None
        return proc
    except (OSError, ValueError, KeyError, TypeError, psutil.NoSuchProcess):
        return None


def write_pid_file(pid_file: Path) -> None:
    """This process's pid and start time (to tell it from a later process that reuses the pid)."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "create_time": psutil.Process().create_time()}
    tmp = pid_file.with_name(pid_file.name + ".tmp")
    tmp.write_text(json.dumps(record) + "\n")
    tmp.replace(pid_file)


def remove_pid_file(pid_file: Path) -> None:
    try:
        if json.loads(pid_file.read_text()).get("pid") == os.getpid():
            pid_file.unlink()
    except (OSError, ValueError):
        pass


def check_not_running(pid_file: Path) -> None:
    """Refuse to start a second supervisor on the same pid file (same Airflow home) while one runs."""
    running = read_pid_file(pid_file)
    if running is not None:
        raise SystemExit(f"already running ({describe(running)}, pid file {pid_file}); stop it first")


def stop_running(pid_file: Path, timeout: float = 40.0) -> int:
    """Send SIGTERM to the supervisor named in ``pid_file`` and wait until it has stopped its tree and
    exited; 0 when stopped or when none was running, 1 when it is still there after ``timeout``."""
    proc = read_pid_file(pid_file)
    if proc is None:
        say(f"not running (no live supervisor in {pid_file})")
        pid_file.unlink(missing_ok=True)
        return 0
    say(f"stopping {describe(proc)}")
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_alive(proc):  # a zombie has stopped; only its parent can collect it
        if time.monotonic() > deadline:
            say(f"pid {proc.pid} still running after {timeout:.0f}s")
            return 1
        time.sleep(0.2)
    say("stopped")
    return 0
