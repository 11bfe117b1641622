"""Document order: the files' order, or a seeded shuffle of it, and chunks of documents for the workers.

The shuffle permutes the file order and then runs a seeded shuffle buffer over the documents (as the
HF ``datasets`` streaming shuffle does), so memory stays bounded however large the source is. The order
depends only on the input, the seed and the buffer size, never on the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cpt_tasks.data.parquet import is_parquet, iter_rows, iter_slices
from cpt_tasks.data.sources import OpenFiles, SourceFile, array_lines, iter_lines, open_blocks

# (file index, line number or parquet row, raw JSON line or, from parquet and `datasets`, the text itself: None
# for a null one)
Document = tuple[int, int, bytes | str | None]


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


def iter_chunks(documents: Iterator[Document], target_bytes: int = 1 << 20) -> Iterator[Chunk]:
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


def iter_blocks(files: list[SourceFile], target_bytes: int = 1 << 20, text_field: str = "text",
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
        line_no, carry, held = 1, [], 0  # the unfinished chunk: views of the blocks it starts in
        for block in blocks:
            start = 0
            while (cut := block.find(b"\n", start + max(target_bytes - held, 0))) >= 0:
                payload = b"".join([*carry, memoryview(block)[start:cut]]) if carry else block[start:cut]
                yield Chunk(payload, block_start=(index, line_no))  # every byte is copied once
                line_no += payload.count(b"\n") + 1
                carry, held, start = [], 0, cut + 1
            if start < len(block):
                carry.append(memoryview(block)[start:])
                held += len(block) - start
        tail = b"".join(carry)
        if tail.strip():
            yield Chunk(tail.rstrip(b"\n"), block_start=(index, line_no))
