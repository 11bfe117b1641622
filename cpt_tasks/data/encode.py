"""The tokenizer processes' work: a chunk of JSON lines (or a list of JSON lines and texts, from parquet and
``datasets``, or a parquet TextBlock) -> framed token ids.

Runs in forked pool workers (or in-process with ``--num_workers 0``). Errors in a record are returned,
not raised, so the parent can name the file and line and stop cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from cpt_tasks.tokenizer import Encoder

_ENCODER: Encoder | None = None


def set_encoder(encoder: Encoder) -> None:
    """Install the encoder used by ``encode_chunk`` (before forking the workers)."""
    global _ENCODER
    _ENCODER = encoder


def load_encoder(folder: str, bos_text: str, eos_text: str, backend: str) -> None:
    """Pool initializer for workers that do not inherit the parent's encoder (forkserver)."""
    from pathlib import Path

    set_encoder(Encoder(Path(folder), bos_text, eos_text, backend))


def start_pool(workers: int, encoder: Encoder, spec: tuple[str, str, str, str]):
    """Tokenizer processes: forked ones inherit ``encoder``; forkserver ones load it from ``spec``."""
    from cpt_tasks.pool import process_pool

    set_encoder(encoder)
    return process_pool(workers, initializer=load_encoder, initargs=spec)


@dataclass
class ChunkResult:
    """Framed tokens of a chunk's non-empty documents, or the first bad record."""

    tokens: np.ndarray
    lengths: np.ndarray
    records: int
    empty: int
    error: tuple[int, str] | None = None
    peak_rss_mb: float = 0.0  # the worker's own high-water mark so far


def _text_of(line: bytes, field: str) -> str:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if field not in record:
        raise ValueError(f"record has no '{field}' field (fields: {', '.join(sorted(record)) or 'none'}); "
                         "name the text field with --text_field")
    text = record[field]
    if not isinstance(text, str):
        raise ValueError(f"'{field}' is {type(text).__name__}, expected a string")
    return text


def encode_chunk(payload, text_field: str = "text") -> ChunkResult:
    """Parse newline-joined JSON records and encode each non-blank ``text_field`` as BOS + ids + EOS; a list
    payload holds JSON lines (bytes) and texts (str); a tuple is a parquet TextBlock."""
    if isinstance(payload, list):
        return _encode_items(payload, text_field)
    if isinstance(payload, tuple):
        from cpt_tasks.data.parquet import TextBlock

        try:
            return _encode_items(TextBlock(payload).texts(), text_field)
        except UnicodeDecodeError as exc:
            return ChunkResult(np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64), 0, 0,
                               (0, f"invalid UTF-8 text: {exc}"))
    texts: list[str] = []
    records = 0
    for index, line in enumerate(payload.split(b"\n")):
        if not line.strip():
            continue  # a blank line is no record
        records += 1
        try:
            text = _text_of(line, text_field)
        except ValueError as exc:
            empty = np.empty(0, dtype=np.int32)
            return ChunkResult(empty, np.empty(0, dtype=np.int64), records, 0, (index, str(exc)))
        if text.strip():
            texts.append(text)
    assert _ENCODER is not None, "set_encoder() was not called"
    tokens, lengths = _ENCODER.encode_framed(texts)
    return ChunkResult(tokens, lengths, records, records - len(texts), peak_rss_mb=peak_rss_mb())


def _encode_items(items: list, text_field: str) -> ChunkResult:
    texts: list[str] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            text = item
        else:
            try:
                text = _text_of(item, text_field)
            except ValueError as exc:
                empty = np.empty(0, dtype=np.int32)
                return ChunkResult(empty, np.empty(0, dtype=np.int64), index + 1, 0, (index, str(exc)))
        if text.strip():
            texts.append(text)
    assert _ENCODER is not None, "set_encoder() was not called"
    tokens, lengths = _ENCODER.encode_framed(texts)
    return ChunkResult(tokens, lengths, len(items), len(items) - len(texts), peak_rss_mb=peak_rss_mb())


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
