"""One logging helper for every job: ``say(job, message)`` prints ``[cpt-<job>] message`` on stderr (the pod's
log; stdout is kept for the job's result); a job module binds its tag once with ``say = teller(JOB)``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial


def tag(job: str) -> str:
    """The job's log tag, e.g. ``[cpt-train]``."""
    return f"[cpt-{job}]"


def say(job: str, message: str) -> None:
    """One line on stderr under the job's own tag."""
    print(f"{tag(job)} {message}", file=sys.stderr, flush=True)


def teller(job: str) -> Callable[[str], None]:
    """``say`` bound to one job's tag."""
    return partial(say, job)
