"""How every network call of the pipeline's storage and sources is bounded: per-attempt timeouts, retries with
exponential backoff, and the one-line error a step ends with when a server stays unreachable.

:class:`Network` carries ``ConvertConfig``'s ``connect_timeout``, ``read_timeout`` and ``max_retries`` (the
plan resolves sources with the same values, from its ``convert_options``); outputs (manifests, shards, checkpoints'
pointers, reports) use the defaults, ``Network()``. :func:`call_with_retries` runs one request again after a
transient failure (5xx, 429, a reset or refused connection, a timeout), sleeping ``backoff_seconds`` between
attempts, and raises :class:`~cpt_tasks.errors.TransientError` (exit 1, the DAG retries the task) naming the host
and what was asked once the retries are spent. :meth:`Network.worst_case_seconds` is the bound docs/faults.md
states: how long a stalled or dead server can hold one call. Used by the Hub and ``datasets`` readers
(``cpt_tasks.data``) and by every object-storage call (``cpt_tasks.storage``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cpt_tasks.errors import TransientError

BACKOFF_BASE = 1.0  # seconds before the first retry; doubled for each further one
BACKOFF_CAP = 30.0  # no single wait is longer
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
T = TypeVar("T")


@dataclass(frozen=True)
class Network:
    """Timeouts (seconds, per attempt) and retries of every network call (inputs and outputs)."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_retries: int = 5

    @classmethod
    def from_config(cls, cfg: object) -> Network:
        """The settings of a ConvertConfig (or anything with the same three fields)."""
        return cls(cfg.connect_timeout, cfg.read_timeout, cfg.max_retries)

    @property
    def timeouts(self) -> tuple[float, float]:
        """``(connect, read)`` as ``requests`` takes them: the read timeout bounds every wait for a byte."""
        return self.connect_timeout, self.read_timeout

    def worst_case_seconds(self, hops: int = 1) -> float:
        """Longest one call can take against a server that accepts no connection or sends nothing: every
        attempt waits out both timeouts on each of its ``hops`` (a redirect is a second hop), plus the
        backoff between attempts."""
        attempts = self.max_retries + 1
        waits = sum(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** k) for k in range(self.max_retries))
        return attempts * hops * (self.connect_timeout + self.read_timeout) + waits


def backoff_seconds(failures: int) -> float:
    """The wait after the ``failures``-th consecutive failure (1-based): exponential, capped, with jitter
    (so six conversion pods that lost the same server do not come back in step)."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)


FAILURE_KINDS = (  # (text in the exception's repr, short reason), first match wins
    ("ConnectTimeout", "connect timeout"), ("Read timed out", "read timeout"), ("timed out", "timeout"),
    ("Read timeout on endpoint", "read timeout"), ("Could not connect to the endpoint", "cannot connect"),
    ("Connection refused", "connection refused"), ("NameResolution", "host not found"),
    ("Name or service not known", "host not found"), ("IncompleteRead", "connection cut"),
    ("Connection broken", "connection cut"), ("reset by peer", "connection reset"),
    ("connection closed", "connection cut"), ("RemoteDisconnected", "connection closed by the server"),
)


def describe_failure(exc: BaseException) -> str:
    """A short reason for a failed attempt: the HTTP status, or what happened to the connection."""
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code}"
    if isinstance(response, dict) and response.get("ResponseMetadata", {}).get("HTTPStatusCode"):  # botocore
        status, code = response["ResponseMetadata"]["HTTPStatusCode"], response.get("Error", {}).get("Code")
        return f"HTTP {status}" + (f" {code}" if code and code != str(status) else "")
    text = repr(exc)
    for needle, reason in FAILURE_KINDS:
        if needle in text:
            return reason
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:120]}" if first else type(exc).__name__


def call_with_retries(call: Callable[[], T], network: Network, host: str, what: str,
                      transient: Callable[[BaseException], bool]) -> T:
    """``call()``, tried up to ``network.max_retries + 1`` times while ``transient(exc)`` says the failure
    may pass; other exceptions propagate at once. TransientError naming ``host`` and ``what`` at the end."""
    failures = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            failures += 1
            if failures > network.max_retries:
                raise TransientError(f"{host}: {what}: {describe_failure(exc)} "
                                     f"({failures} attempts)") from exc
            time.sleep(backoff_seconds(failures))
