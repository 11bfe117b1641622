"""A byte stream of one object that survives cut transfers: when a read fails or the connection ends before the
object does, it reopens the object with a ranged request from the byte reached, pinned to the version listed.

At most ``max_retries`` attempts in a row without a byte of progress, with the pipeline's backoff between them
(:func:`~cpt_tasks.storage.network.backoff_seconds`); then TransientError (exit 1). A pinned version that is gone
(the object was replaced or deleted since it was listed) is BadDataError (exit 3): retrying reads the same.
"""

from __future__ import annotations

import sys
import time

from cpt_tasks.errors import BadDataError, TransientError, UserError
from cpt_tasks.storage.backends import ObjectChanged, ObjectStore
from cpt_tasks.storage.network import backoff_seconds, describe_failure


class ResumingStream:
    """The object ``key`` of ``store`` (``size`` bytes, version ``pin``) as a binary stream; ``name`` is what
    messages call it."""

    def __init__(self, store: ObjectStore, key: str, size: int, pin: str | int, name: str) -> None:
        self.store, self.key, self.size, self.pin, self.name = store, key, size, pin, name
        self.max_retries = store.network.max_retries
        self.body = None
        self.pos = 0
        self.failures = 0  # in a row, without a byte of progress
        self.resumes = 0

    def read(self, n: int = -1) -> bytes:
        while True:
            if self.pos >= self.size:
                return b""
            try:
                if self.body is None:
                    self.body = self._open()
                data = self.body.read(n if n and n > 0 else None)
            except (BadDataError, UserError):
                raise
            except Exception as exc:  # noqa: BLE001 - which errors are transient is the store's to say
                self._retry(exc)
                continue
            if not data:  # the connection ended before the object did
                self._retry(EOFError(f"stream ended at byte {self.pos:,} of {self.size:,}"))
                continue
            self.pos += len(data)
            self.failures = 0
            return data

    def _open(self):
        try:
            return self.store.open(self.key, self.pos, self.pin)
        except ObjectChanged as exc:
            raise BadDataError(f"{self.name}: changed or deleted since it was listed "
                               f"({self.store.describe_pin(self.pin)}): {exc}") from exc

    def _retry(self, exc: Exception) -> None:
        if isinstance(exc, ObjectChanged):  # a block read of a pinned version that is gone
            raise BadDataError(f"{self.name}: changed or deleted since it was listed "
                               f"({self.store.describe_pin(self.pin)}): {exc}") from exc
        if not self.store.transient(exc):
            raise exc
        self.close()
        self.failures += 1
        if self.failures > self.max_retries:
            raise TransientError(f"{self.store.host}: {self.name}: reading failed at byte {self.pos:,} of "
                                 f"{self.size:,}, {self.max_retries} retries exhausted: {describe_failure(exc)}") \
                from exc
        self.resumes += 1
        print(f"{self.name}: read cut at byte {self.pos:,} ({type(exc).__name__}: {exc}); resuming from there "
              f"(retry {self.failures}/{self.max_retries})", file=sys.stderr, flush=True)
        time.sleep(backoff_seconds(self.failures))

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self.body is not None:
            try:
                self.body.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
                pass
            self.body = None
