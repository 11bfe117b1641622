"""Shared memory between the converter and its forked tokenizer processes: each chunk's bytes go out and its
framed tokens come back through it instead of through the pool's pipe.

A payload or a result sent through ``ProcessPoolExecutor``'s pipe is pickled, copied through the kernel 64 KiB
at a time and unpickled: measured here, 2.2 core-seconds per 800 MB (the tokens of 200M), a twentieth of a
conversion's work. Through a slot it is one copy on the way in and none on the way out: the converter reads the
tokens in place.

The slots are anonymous shared mappings made before the workers are forked, so every worker inherits them. Chunk
``n`` uses slot ``n mod count`` (its bytes in the input slot, its tokens in the result slot), and the converter
submits chunk ``n`` only after it has consumed chunk ``n - count`` (``count`` is its window of chunks in flight),
so a slot is never written while it is still being read. A payload or a result larger than its slot goes through
the pipe as before, and each says which way it came. Workers that are not forked (forkserver) get no slots.
"""

from __future__ import annotations

import mmap
from typing import NamedTuple

import numpy as np

RESULT_BYTES = 16 << 20  # a 2 MiB chunk's framed tokens: at most one per byte and two per document, 4 bytes each
INPUT_BYTES = 4 << 20  # a chunk's bytes: about 2 MiB (order.CHUNK_BYTES), cut after the line that passes it


class SlotBytes(NamedTuple):
    """A payload's bytes, left in an input slot."""

    slot: int
    size: int


class SharedSlots:
    """``count`` input and result slots in memory shared with forked processes (pages are used as written)."""

    def __init__(self, count: int, result_bytes: int = RESULT_BYTES, input_bytes: int = INPUT_BYTES) -> None:
        self.count, self.result_bytes, self.input_bytes = count, result_bytes, input_bytes
        self.results = mmap.mmap(-1, count * result_bytes)  # MAP_SHARED | MAP_ANONYMOUS
        self.inputs = mmap.mmap(-1, count * input_bytes)

    def slot(self, number: int) -> int:
        """The slot of the ``number``-th chunk submitted."""
        return number % self.count

    def send(self, slot: int, payload):
        """What to submit for ``payload`` (the converter's side): its bytes copied into input ``slot`` when they
        fit (plain bytes, or the bytes that lead a tuple such as a parquet TextBlock), else the payload itself."""
        data = payload[0] if isinstance(payload, tuple) else payload
        if type(data) is not bytes or len(data) > self.input_bytes:  # a FileBytes is read from its file
            return payload
        start = slot * self.input_bytes
        self.inputs[start:start + len(data)] = data
        sent = SlotBytes(slot, len(data))
        return type(payload)((sent, *payload[1:])) if isinstance(payload, tuple) else sent

    def receive(self, payload):
        """The payload the converter sent, its bytes read back from their input slot (a worker's side)."""
        if isinstance(payload, SlotBytes):
            return self._read(payload)
        if isinstance(payload, tuple) and payload and isinstance(payload[0], SlotBytes):
            return type(payload)((self._read(payload[0]), *payload[1:]))
        return payload

    def _read(self, sent: SlotBytes) -> bytes:
        start = sent.slot * self.input_bytes
        return self.inputs[start:start + sent.size]

    def put(self, slot: int, tokens: np.ndarray) -> bool:
        """Copy ``tokens`` into result ``slot`` (a worker's side); False when they do not fit."""
        data = memoryview(tokens).cast("B")
        if data.nbytes > self.result_bytes:
            return False
        start = slot * self.result_bytes
        self.results[start:start + data.nbytes] = data
        return True

    def tokens(self, slot: int, count: int) -> np.ndarray:
        """The ``count`` int32 tokens a worker put in ``slot``, in place (valid until the slot is written again)."""
        return np.frombuffer(self.results, dtype=np.int32, count=count, offset=slot * self.result_bytes)
