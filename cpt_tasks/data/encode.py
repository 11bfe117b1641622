"""The tokenizer processes' work: a chunk of JSON lines (or a list of JSON lines and texts, from parquet and
``datasets``, or a parquet TextBlock) -> framed token ids.

Runs in forked pool workers (or in-process with ``--num_workers 0``). Errors in a record are returned,
not raised, so the parent can name the file and line and stop cleanly. A document whose text is blank (empty or
whitespace) or null is skipped and counted (apart: ``empty``, ``null``); a record without the text field is an
error (a :class:`~cpt_tasks.errors.MissingTextField`, so the parent's caller names its own option).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import orjson

from cpt_tasks.data.shared_slots import SharedSlots
from cpt_tasks.errors import MissingTextField
from cpt_tasks.tokenizer import Encoder

_ENCODER: Encoder | None = None
_SLOTS: SharedSlots | None = None  # inherited by forked workers only


def set_encoder(encoder: Encoder) -> None:
    """Install the encoder used by ``encode_chunk`` (before forking the workers)."""
    global _ENCODER
    _ENCODER = encoder


def load_encoder(folder: str, bos_text: str, eos_text: str, backend: str) -> None:
    """Pool initializer for workers that do not inherit the parent's encoder (forkserver)."""
    from pathlib import Path

    set_encoder(Encoder(Path(folder), bos_text, eos_text, backend))


def start_pool(workers: int, encoder: Encoder, spec: tuple[str, str, str, str], window: int):
    """(tokenizer processes, their SharedSlots or None): forked ones inherit ``encoder`` and ``window`` shared
    slots for the chunks in flight; forkserver ones load the encoder from ``spec`` and use the pool's pipe."""
    from cpt_tasks.pool import forks, process_pool

    global _SLOTS
    set_encoder(encoder)
    _SLOTS = SharedSlots(window) if forks() else None
    return process_pool(workers, initializer=load_encoder, initargs=spec), _SLOTS


def stop_pool(pool) -> None:
    """Stop the tokenizer processes (running chunks are short; queued ones are cancelled) and let their slots go
    (a long-lived process that converts again gets new ones)."""
    global _SLOTS
    pool.shutdown(wait=True, cancel_futures=True)
    _SLOTS = None


@dataclass
class ChunkResult:
    """Framed tokens of a chunk's documents with text, or the first bad record (its line in the chunk, and why:
    a message, or the MissingTextField without its location)."""

    tokens: np.ndarray
    lengths: np.ndarray
    records: int
    empty: int  # blank texts skipped
    error: tuple[int, str | MissingTextField] | None = None
    peak_rss_mb: float = 0.0  # the worker's own high-water mark so far
    null: int = 0  # null texts skipped
    slot: int | None = None  # the tokens are in this shared slot (``tokens`` is then empty) ...
    count: int = 0  # ... and this many

    def __reduce__(self):
        """Sent back to the parent as the tokens' own bytes (an array pickles a copy of them, unpickles another)."""
        tokens = self.tokens
        data = tokens.base if isinstance(tokens.base, (bytes, bytearray)) and tokens.nbytes == len(tokens.base) else \
            tokens.tobytes()
        return _rebuilt, (data, self.lengths, self.records, self.empty, self.error, self.peak_rss_mb, self.null,
                          self.slot, self.count)

    def framed_tokens(self, slots: SharedSlots | None) -> np.ndarray:
        """The framed tokens, wherever they came back (read in place from a shared slot)."""
        if self.slot is None:
            return self.tokens
        assert slots is not None, "a result in a shared slot needs the slots"
        return slots.tokens(self.slot, self.count)


def _rebuilt(data: bytes, *rest) -> ChunkResult:
    return ChunkResult(np.frombuffer(data, dtype=np.int32), *rest)


def _text_of(line: bytes, field: str) -> str | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if field not in record:
        raise MissingTextField(field, sorted(record), "record")
    text = record[field]
    if text is not None and not isinstance(text, str):
        raise ValueError(f"'{field}' is {type(text).__name__}, expected a string")
    return text


def _failed(records: int, index: int, exc: Exception) -> ChunkResult:
    problem = exc if isinstance(exc, MissingTextField) else str(exc)
    return ChunkResult(np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64), records, 0, (index, problem))


def encode_chunk(payload, text_field: str = "text", slot: int | None = None) -> ChunkResult:
    """Parse newline-joined JSON records and encode each non-blank ``text_field`` as BOS + ids + EOS; a list
    payload holds JSON lines (bytes), texts (str) and null texts (None); a tuple is a parquet TextBlock. With
    ``slot``, a forked worker reads the payload's bytes from that shared slot when they were left there, and puts
    the tokens there when they fit (see ``shared_slots``)."""
    if slot is not None and _SLOTS is not None:
        payload = _SLOTS.receive(payload)
    result = _encode_payload(payload, text_field)
    if slot is not None and _SLOTS is not None and result.error is None and _SLOTS.put(slot, result.tokens):
        result.slot, result.count = slot, len(result.tokens)
        result.tokens = result.tokens[:0]
    return result


def _encode_payload(payload, text_field: str) -> ChunkResult:
    if isinstance(payload, list):
        return _encode_items(enumerate(payload), text_field)
    if isinstance(payload, tuple):
        from cpt_tasks.data.parquet import TextBlock

        try:
            texts = TextBlock(payload).texts()
        except UnicodeDecodeError as exc:
            return _failed(0, 0, ValueError(f"invalid UTF-8 text: {exc}"))
        return _encode_items(enumerate(texts), text_field)
    return _encode_items(enumerate(payload.split(b"\n")), text_field)  # a blank line is no record


def _encode_items(items: Iterable[tuple[int, bytes | str | None]], text_field: str) -> ChunkResult:
    """Encode (line in the chunk, JSON line or text or None) items; blank and null texts are counted apart. One
    tight loop: the per-document work besides tokenizing is a tenth of it."""
    texts: list[str] = []
    records = null = 0
    loads, keep = orjson.loads, texts.append
    for index, item in items:
        if item.__class__ is bytes:
            if not item or item.isspace():  # a blank line (only in newline-joined payloads)
                continue
            records += 1
            try:
                record = loads(item)
                text = record[text_field] if record.__class__ is dict else _ODD
            except (ValueError, KeyError):  # orjson.JSONDecodeError is a ValueError
                text = _ODD
            if text is not None and text.__class__ is not str:
                try:
                    text = _text_of(item, text_field)  # names what is wrong with the record
                except (ValueError, MissingTextField) as exc:
                    return _failed(records, index, exc)
        else:
            records += 1
            text = item
        if text is None:
            null += 1
        elif text and not text.isspace():  # str.isspace: what strip() strips, without copying the text
            keep(text)
    assert _ENCODER is not None, "set_encoder() was not called"
    tokens, lengths = _ENCODER.encode_framed(texts)
    return ChunkResult(tokens, lengths, records, records - len(texts) - null, peak_rss_mb=peak_rss_mb(), null=null)


_ODD = object()  # a record that is not an object with a string or null text: _text_of says why


def peak_rss_mb() -> float:
    """This process's peak resident memory, from /proc's VmHWM (its own address space only: ru_maxrss would
    also count what an exec'ing parent held, and a forkserver's workers are not our children)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
