"""One logging helper for every job: ``say(job, message)`` prints ``[cpt-<job>] message`` on stderr (the pod's
log; stdout is kept for the job's result); a job module binds its tag once with ``say = teller(JOB)`` (or
``teller(JOB, when)``: only where ``when()`` holds, e.g. on one rank of many)."""

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


def teller(job: str, when: Callable[[], bool] | None = None) -> Callable[[str], None]:
    """``say`` bound to one job's tag; with ``when``, only where it holds (e.g. on global rank 0)."""
    if when is None:
        return partial(say, job)

    def say_when(message: str) -> None:
        if when():
            say(job, message)

    return say_when
