"""Document order: the files' order, or a seeded shuffle of it, and chunks of documents for the workers.

The shuffle permutes the file order and then runs a seeded shuffle buffer over the documents (as the
HF ``datasets`` streaming shuffle does), so memory stays bounded however large the source is. The order
depends only on the input, the seed and the buffer size, never on the number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cpt_tasks.data.parquet import is_parquet, iter_rows, iter_slices
from cpt_tasks.data.sources import BOM, OpenFiles, SourceFile, array_lines, iter_lines, open_blocks

# (file index, line number or parquet row, raw JSON line or, from parquet and `datasets`, the text itself: None
# for a null one)
Document = tuple[int, int, bytes | str | None]
# A chunk's bytes: a tokenizer process's unit of work. 2 MiB halves the per-chunk costs of 1 MiB (submitting,
# results, buffers) at 200M tokens (0.89 -> 0.92 of tiktoken's 2-process ceiling here) and is as fast at 10M;
# 4 MiB is no faster at 200M and leaves a longer last chunk at 10M.
CHUNK_BYTES = 2 << 20


def iter_documents(files: list[SourceFile], shuffle: bool, seed: int, buffer: int,
                   text_field: str = "text", opened: OpenFiles | None = None) -> Iterator[Document]:
    """Documents in conversion order (``opened``: see :class:`~cpt_tasks.data.sources.OpenFiles`)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    order = rng.permutation(len(files)).tolist() if shuffle else range(len(files))
    documents = _lines_in_order(files, order, text_field, opened)
    yield from shuffle_documents(documents, rng, buffer) if shuffle else documents


def shuffle_documents(documents: Iterator[Document], rng: np.random.Generator, buffer: int) -> Iterator[Document]:
    """The seeded shuffle buffer over a stream of documents."""
    held: list[Document] = []
    draws: list[int] = []
    for index, line_no, line in documents:
        if len(held) < buffer:
            held.append((index, line_no, line))
            continue
        if not draws:
            draws = rng.integers(0, buffer, size=4096).tolist()
        slot = draws.pop()
        yield held[slot]
        held[slot] = (index, line_no, line)
    for slot in rng.permutation(len(held)).tolist():
        yield held[slot]


def _lines_in_order(files: list[SourceFile], order, text_field: str, opened: OpenFiles | None) -> Iterator[Document]:
    for position in order:
        src = files[position]
        if is_parquet(src.rel):
            yield from iter_rows(position, src, text_field)
            continue
        for _, line_no, line in iter_lines([src], opened):
            yield position, line_no, line


@dataclass
class Chunk:
    """A batch of documents for one worker call, and where its lines came from: ``origins`` per line, or (for a
    block cut from one file) the file and the number of its first line. ``payload`` is newline-separated JSON
    lines, a list of JSON lines (bytes) and texts (str or None, from parquet or ``datasets``), or a parquet
    TextBlock."""

    payload: bytes | list[bytes | str | None] | tuple
    origins: list[tuple[int, int]] | None = None
    block_start: tuple[int, int] | None = None

    def locate(self, line: int) -> tuple[int, int]:
        """(file index, line number, or record number in a JSON array file) of the payload's ``line``-th line."""
        if self.origins is not None:
            return self.origins[line]
        assert self.block_start is not None
        return self.block_start[0], self.block_start[1] + line


def iter_chunks(documents: Iterator[Document], target_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Group documents into payloads of about ``target_bytes``: newline-joined when all are JSON lines, else
    the list of them (texts from parquet or ``datasets``, None for a null one, are sent as they are, never
    re-serialized)."""
    lines: list[bytes | str | None] = []
    origins: list[tuple[int, int]] = []
    size, texts = 0, False
    for index, line_no, line in documents:
        lines.append(line)
        origins.append((index, line_no))
        size += (0 if line is None else len(line)) + 1
        texts = texts or not isinstance(line, bytes)
        if size >= target_bytes:
            yield Chunk(lines if texts else b"\n".join(lines), origins=origins)
            lines, origins, size, texts = [], [], 0, False
    if lines:
        yield Chunk(lines if texts else b"\n".join(lines), origins=origins)


def iter_blocks(files: list[SourceFile], target_bytes: int = CHUNK_BYTES, text_field: str = "text",
                opened: OpenFiles | None = None) -> Iterator[Chunk]:
    """Unshuffled order without splitting lines here: each file's content cut after a newline every
    ``target_bytes`` (the workers split and count lines). JSON-array files go line by line; parquet files in
    TextBlocks of about ``target_bytes``."""
    for index, src in enumerate(files):
        if is_parquet(src.rel):
            for first_row, texts in iter_slices(src, text_field, target_bytes):
                yield Chunk(texts, block_start=(index, first_row))
            continue
        is_array, blocks = open_blocks(src, opened)
        if is_array:
            yield from iter_chunks(array_lines(index, src, b"".join(blocks)), target_bytes)
            continue
        yield from _cut_blocks(index, blocks, target_bytes, _plain_file(src))


def _cut_blocks(index: int, blocks: Iterator[bytes], target_bytes: int, file: tuple | None) -> Iterator[Chunk]:
    """A JSON-lines file's blocks cut after the first newline past every ``target_bytes``; ``file``: a plain
    local file's identity (see :func:`_plain_file`), which its chunks carry (see :class:`FileBytes`)."""
    line_no, carry, held, offset = 1, [], 0, 0  # the unfinished chunk: views of the blocks it starts in
    for block in blocks:
        start = 0
        while (cut := block.find(b"\n", start + max(target_bytes - held, 0))) >= 0:
            part = memoryview(block)[start:cut]
            payload = b"".join([*carry, part]) if carry else part  # every byte is copied once (or twice)
            payload = bytes(payload) if file is None else FileBytes(payload, file, offset - held + start)
            yield Chunk(payload, block_start=(index, line_no))
            line_no += int(np.count_nonzero(np.frombuffer(payload, dtype=np.uint8) == 10)) + 1  # 3x bytes.count
            carry, held, start = [], 0, cut + 1
        if start < len(block):
            carry.append(memoryview(block)[start:])
            held += len(block) - start
        offset += len(block)
    tail = b"".join(carry)
    if tail.strip():
        yield Chunk(tail.rstrip(b"\n"), block_start=(index, line_no))


def _plain_file(src: SourceFile) -> tuple | None:
    """(path, size, mtime, ctime, inode) of a local, uncompressed file that starts without a byte order mark (its
    blocks are its bytes), else None. A worker reads its chunks' bytes again and refuses them if any of these
    changed: an edit that restores the mtime (touch -r, cp -p) still moves the ctime. The main process hashes
    the same bytes against the listing as it reads them."""
    if src.opener is not None or src.rel.endswith((".gz", ".zst")):
        return None
    try:
        with open(src.url, "rb") as fh:
            stat = os.fstat(fh.fileno())
            if fh.read(len(BOM)) == BOM:
                return None
    except OSError:
        return None
    return os.path.abspath(src.url), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino


class FileBytes(bytes):
    """A chunk's bytes that a tokenizer process reads from the file itself (``os.pread``) instead of through the
    pool's pipe: pickled as where they lie, they skip a pickle copy, two pipe copies and an unpickle copy."""

    def __new__(cls, data, file: tuple, offset: int) -> FileBytes:
        self = super().__new__(cls, data)
        self.span = (*file, offset, len(self))
        return self

    def __reduce__(self):
        return _read_span, self.span


def _read_span(path: str, size: int, mtime: int, ctime: int, inode: int, offset: int, length: int) -> bytes:
    """The bytes of a FileBytes, read in the tokenizer process; OSError if the file changed since it was cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        stat = os.fstat(fd)
        data = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    if (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino) != (size, mtime, ctime, inode) \
            or len(data) != length:
        raise OSError(f"{path} changed while it was being converted")
    return data
