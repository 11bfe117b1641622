"""Parquet input: one string column (``--text_field``) read with pyarrow, row group by row group.

Only the text column is decoded. Texts reach the tokenizer workers as a :class:`TextBlock`: about 1 MB of the
column's UTF-8 data, copied once out of the Arrow buffer, the offsets of its rows and which of them are null (a
null text is an empty document: skipped and counted); the workers cut and decode the strings. Nothing is
re-serialized to JSON, and the parent (one process, which also packs and writes) never builds a Python string.
(Measured here on 9 MB of text: pickling Arrow arrays costs the parent ~0.4 s per 100 MB, ``to_pylist`` plus
pickling lists ~0.2 s, copying the buffer slices ~0.01 s.)

Verification. Parquet needs random access (its footer is at the end), so a file on the Hub or object storage
cannot be streamed through :class:`~cpt_tasks.data.verified.VerifyingReader` while it is decoded. It is
therefore fetched whole, sequentially, through the verifying reader into a temporary file under the system
temp dir, and decoded from there (memory-mapped) only once its size and digest have checked out. A temp file
rather than memory because a parquet file of a real corpus is hundreds of MB to GBs and the conversion's
memory is meant to stay flat whatever the input; the file is unlinked as soon as it is mapped, so nothing is
left behind, even by a killed run. A local file is mapped in place: its listing hashed these very bytes.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from cpt_tasks.errors import MissingTextField, UserError

SUFFIX = ".parquet"
BATCH_ROWS = 1024  # rows decoded at a time: the first texts reach the workers at once


def is_parquet(name: str) -> bool:
    """True for a ``.parquet`` file name or key."""
    return name.endswith(SUFFIX)


@contextmanager
def open_parquet(src):
    """A ``pyarrow.parquet.ParquetFile`` over ``src`` (a SourceFile): a local file in place, else the whole
    object fetched through ``src``'s verifying opener into an anonymous temp file first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if src.opener is None:  # a local file (every remote one has its verifying opener)
        source = pa.memory_map(src.url)
    else:
        source = pa.py_buffer(_fetch_verified(src))
    try:
        yield pq.ParquetFile(source)
    except pa.ArrowInvalid as exc:  # not parquet, or corrupt pages (an OSError stays retryable)
        raise UserError(f"{src.rel}: not a readable parquet file: {exc}") from exc


def _fetch_verified(src) -> mmap.mmap:
    """The object's bytes, copied sequentially through its verifying opener (the Hub's or object storage's: each
    checks size and digest at the end) into a temp file, mapped."""
    raw = src.opener()
    fd, name = tempfile.mkstemp(prefix="cpt-parquet-", suffix=SUFFIX)
    try:
        os.unlink(name)  # anonymous from here: gone when closed, however the process ends
        with raw, os.fdopen(os.dup(fd), "wb") as out:
            shutil.copyfileobj(raw, out, 1 << 22)
            if hasattr(raw, "check"):
                raw.check()
        size = os.fstat(fd).st_size
        if size == 0:
            raise UserError(f"{src.rel}: empty file, not parquet")
        return mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


def _text_column(pf, src, field: str):
    names = pf.schema_arrow.names
    if field not in names:
        raise MissingTextField(field, names, "column", src.rel)


def _checked(array, src, field: str, first_row: int):
    """The batch's text column as a (large) string array, its nulls kept (a column of nulls only included);
    UserError naming file, row and field if the column is not text."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_string_view(kind) or pa.types.is_null(kind):
        array = array.cast(pa.large_string())
    elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise UserError(f"{src.rel}, row {first_row}: '{field}' is {kind} (not a string), expected a string")
    return array


def iter_text_batches(src, field: str) -> Iterator[tuple[int, object]]:
    """(1-based number of the batch's first row, its checked text array), row group by row group."""
    with open_parquet(src) as pf:
        _text_column(pf, src, field)
        row = 1
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=[field], use_threads=False):
            array = _checked(batch.column(0), src, field, row)
            yield row, array
            row += len(array)


def iter_rows(index: int, src, field: str) -> Iterator[tuple[int, int, str | None]]:
    """Every row's text as (file index, 1-based row number, text or None): a shuffled conversion's documents."""
    for first, array in iter_text_batches(src, field):
        for offset, text in enumerate(array.to_pylist()):
            yield index, first + offset, text


class TextBlock(tuple):
    """``(data, offsets, nulls)``: consecutive texts as one UTF-8 byte string, the ``len + 1`` offsets of their
    starts and end (int64 array), and which texts are null (bool array; None: none is); what a tokenizer worker
    receives from a parquet file."""

    __slots__ = ()

    def texts(self) -> list[str | None]:
        """The decoded strings, None for a null one (UnicodeDecodeError on invalid UTF-8)."""
        data, offsets, nulls = self
        bounds = offsets.tolist()
        if nulls is None:
            return [data[a:b].decode("utf-8") for a, b in zip(bounds, bounds[1:])]
        return [None if null else data[a:b].decode("utf-8") for a, b, null in zip(bounds, bounds[1:], nulls.tolist())]


def iter_slices(src, field: str, target_bytes: int) -> Iterator[tuple[int, TextBlock]]:
    """(first row number, a TextBlock of about ``target_bytes`` of consecutive rows), in file order: small
    batches are decoded (the workers start at once) and their rows gathered into blocks."""
    import numpy as np
    import pyarrow as pa

    parts: list[tuple[bytes, np.ndarray, np.ndarray | None]] = []  # the block's pieces, offsets from 0 each
    first_row, size = 1, 0
    for first, array in iter_text_batches(src, field):
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int64 if pa.types.is_large_string(array.type)
                                else np.int32)[array.offset:array.offset + len(array) + 1].astype(np.int64)
        data = array.buffers()[2]
        nulls = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
        start = 0
        while start < len(array):
            stop = int(np.searchsorted(offsets, offsets[start] + target_bytes - size, side="left"))
            stop = min(max(stop, start + 1), len(array))
            low, high = int(offsets[start]), int(offsets[stop])
            if not parts:
                first_row = first + start
            parts.append((data[low:high].to_pybytes() if high > low else b"", offsets[start:stop + 1] - low,
                          None if nulls is None else nulls[start:stop]))
            size += high - low
            start = stop
            if size >= target_bytes:
                yield first_row, _joined(parts)
                parts, size = [], 0
    if parts:
        yield first_row, _joined(parts)


def _joined(parts) -> TextBlock:
    import numpy as np

    if len(parts) == 1:
        return TextBlock(parts[0])
    shifts = np.cumsum([0] + [len(data) for data, _, _ in parts[:-1]])
    offsets = np.concatenate([parts[0][1][:1]] + [o[1:] + shift for (_, o, _), shift in zip(parts, shifts)])
    nulls = None
    if any(part[2] is not None for part in parts):
        nulls = np.concatenate([np.zeros(len(o) - 1, dtype=bool) if n is None else n for _, o, n in parts])
    return TextBlock((b"".join(data for data, _, _ in parts), offsets, nulls))
