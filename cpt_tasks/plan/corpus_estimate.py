"""A corpus's framed tokens estimated from a bounded sample: the plan never tokenizes a whole corpus.

The sample is at most :data:`SAMPLE_FILES` files spread evenly over the listing (the first and the last among
them) and at most :data:`SAMPLE_BYTES` of their raw bytes (as listed: compressed ones compressed) in all, whatever
the corpus's size. Each sampled file gets an even share of what is left of the bytes: a file within its share is
read whole, as the converter reads it (and checked against its listing at its end); a larger one only in part,
from its start: JSON lines (plain, .gz, .zst) a prefix of its raw bytes decompressed as far as it goes (at most
:data:`EXPANSION` times the share; its complete lines count, against the raw bytes they came from), parquet its
first row group's rows (against that row group's compressed size, from the file's metadata). A JSON-array file
or a remote parquet file (only readable whole) over its share is left out of the sample.

Every sampled document is framed as the conversion frames it (BOS + tokens + EOS per document with text, blank
and null texts skipped: :func:`~cpt_tasks.data.encode.encode_chunk`), so the estimate is the sample's framed
tokens per raw byte × the corpus's listed bytes; when every file was read whole it is the exact count. What the
sample reads is validated as the conversion would: a bad record or a missing text field raises the same errors.
A source without files (``datasets``) cannot be sampled by bytes: no estimate (None).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

from cpt_tasks.data.encode import encode_chunk, set_encoder
from cpt_tasks.data.order import Chunk, iter_blocks
from cpt_tasks.data.parquet import is_parquet, iter_text_batches, open_parquet
from cpt_tasks.data.readers import record_error
from cpt_tasks.data.sources import BOM, Source, open_raw
from cpt_tasks.errors import MissingTextField, UserError
from cpt_tasks.tokenizer import Encoder

SAMPLE_FILES = 8  # files sampled at most, spread evenly over the listing
SAMPLE_BYTES = 8 << 20  # raw bytes read at most, in all
EXPANSION = 8  # a compressed prefix is decompressed to at most this many times its share of the raw bytes
PIECE = 1 << 16  # raw bytes handed to a decompressor at a time


@dataclass(frozen=True)
class CorpusEstimate:
    """What the sample says: the corpus's estimated framed tokens (exact when ``complete``), the documents with
    text and the longest framed document it saw, its framed tokens and the raw bytes they stand for, the raw bytes
    it read, and the files it read (whole or in part)."""

    tokens: int
    documents: int
    longest: int
    sample_tokens: int
    sample_bytes: int
    read_bytes: int
    files: int
    complete: bool  # every file of the corpus was read whole: ``tokens`` is its exact count

    def describe(self) -> str:
        """How the number was found, for messages: ``counted (every file read)`` or the sample's size."""
        if self.complete:
            return f"{self.tokens:,} tokens in {self.documents:,} documents (counted: every file read)"
        return (f"about {self.tokens:,} tokens (estimated from {self.sample_tokens:,} tokens in "
                f"{self.sample_bytes:,} sampled bytes of {self.files} files)")


def spread(count: int, picks: int = SAMPLE_FILES) -> list[int]:
    """Up to ``picks`` indices spread evenly over ``count`` (the first and the last among them)."""
    if count <= picks:
        return list(range(count))
    return sorted({round(i * (count - 1) / (picks - 1)) for i in range(picks)})


@dataclass
class _Tally:
    tokens: int = 0
    documents: int = 0
    longest: int = 0
    sample_bytes: float = 0.0  # raw bytes the counted documents came from
    read_bytes: int = 0

    def add(self, lengths) -> None:
        self.tokens += int(lengths.sum())
        self.documents += len(lengths)
        self.longest = max([self.longest, *map(int, lengths)])


def estimate_corpus(source: Source, text_field: str, encoder: Encoder, where: str,
                    text_option: str) -> CorpusEstimate | None:
    """``source``'s framed tokens estimated from a bounded sample (None for a source without files); UserError
    naming ``where`` (the option), the file and the record for a bad record or a sample with no text; for a
    record or file without ``text_field`` a MissingTextField naming ``text_option``, the option that sets it."""
    if source.kind == "datasets" or not source.files:
        return None
    set_encoder(encoder)
    try:
        return _estimate(source, text_field)
    except MissingTextField as exc:
        raise exc.naming(text_option, where) from None
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from exc


def _estimate(source: Source, field: str) -> CorpusEstimate | None:
    picks = spread(len(source.files))
    tally, left, whole = _Tally(), SAMPLE_BYTES, len(picks) == len(source.files)
    for number, index in enumerate(picks):
        one = replace(source, files=[source.files[index]])  # errors name this file
        share = left // (len(picks) - number)
        if share <= 0:
            break
        before = tally.read_bytes
        if one.files[0].size <= share:
            _read_whole(one, field, tally)
        else:
            whole = False
            (_parquet_head if is_parquet(one.files[0].rel) else _prefix)(one, field, share, tally)
        left -= tally.read_bytes - before
    if tally.sample_bytes <= 0:
        return None  # nothing could be measured (JSON arrays or remote parquet over their share)
    if tally.documents == 0:
        sampled = "" if whole else f" in the {tally.read_bytes:,} bytes sampled"
        raise UserError(f"no document with text in field '{field}'{sampled} ({len(source.files)} files, "
                        f"{source.total_bytes:,} bytes)")
    tokens = tally.tokens if whole else round(tally.tokens / tally.sample_bytes * source.total_bytes)
    return CorpusEstimate(tokens=tokens, documents=tally.documents, longest=tally.longest,
                          sample_tokens=tally.tokens, sample_bytes=round(tally.sample_bytes),
                          read_bytes=tally.read_bytes, files=len(picks), complete=whole)


def _encode(one: Source, chunk: Chunk, field: str, tally: _Tally) -> None:
    result = encode_chunk(chunk.payload, field)
    if result.error is not None:
        raise record_error(one, chunk, result.error)
    tally.add(result.lengths)


def _read_whole(one: Source, field: str, tally: _Tally) -> None:
    """The whole file, read as an unshuffled conversion reads it (and checked against its listing)."""
    for chunk in iter_blocks(one.files, text_field=field):
        _encode(one, chunk, field, tally)
    tally.sample_bytes += one.files[0].size
    tally.read_bytes += one.files[0].size


def _prefix(one: Source, field: str, share: int, tally: _Tally) -> None:
    """The complete JSON lines in the first ``share`` raw bytes of a larger file, decompressed as far as they go;
    they count against their part of the raw bytes read."""
    src = one.files[0]
    with open_raw(src) as fh:  # a remote file closed early: only a file read to its end is checked
        data, raw = _decompressed(src, fh, share)
    tally.read_bytes += raw
    if data.startswith(BOM):
        data = data[len(BOM):]
    if src.rel.endswith((".json", ".json.gz", ".json.zst")) and data.lstrip()[:1] == b"[":
        return  # one JSON array: no prefix of it is a record
    used = data.rfind(b"\n") + 1
    if used == 0:
        return  # not one whole line in the prefix
    _encode(one, Chunk(data[:used], block_start=(0, 1)), field, tally)
    tally.sample_bytes += raw * used / len(data)


def _decompressed(src, fh, share: int) -> tuple[bytes, int]:
    """(the content the first ``share`` raw bytes of ``fh`` decompress to, the raw bytes read)."""
    if src.rel.endswith(".gz"):
        new = lambda: zlib.decompressobj(zlib.MAX_WBITS | 16)  # noqa: E731 (one gzip member each)
    elif src.rel.endswith(".zst"):
        import zstandard

        new = zstandard.ZstdDecompressor().decompressobj
    else:
        data = fh.read(share)
        return data, len(data)
    out, size, raw, dobj = [], 0, 0, new()
    try:
        while raw < share and size < share * EXPANSION:
            piece = fh.read(min(PIECE, share - raw))
            if not piece:
                break
            raw += len(piece)
            while piece:
                block = dobj.decompress(piece)
                out.append(block)
                size += len(block)
                piece = dobj.unused_data if dobj.eof else b""
                if dobj.eof:
                    dobj = new()  # the next gzip member or zstd frame
    except zlib.error as exc:
        raise UserError(f"{src.rel}: unreadable compressed data: {exc}") from exc
    except Exception as exc:  # zstandard.ZstdError has no stable import path across versions
        if type(exc).__name__ == "ZstdError":
            raise UserError(f"{src.rel}: corrupt zstd data: {exc}") from exc
        raise
    return b"".join(out), raw


def _parquet_head(one: Source, field: str, share: int, tally: _Tally) -> None:
    """The first row group's rows of a larger local parquet file, until their part of the row group's compressed
    size reaches ``share`` (or their text ``share`` × EXPANSION), against that part of its compressed size."""
    src = one.files[0]
    if src.opener is not None:
        return  # a remote parquet file is only readable whole (its footer is at its end): left out
    with open_parquet(src) as pf:
        meta = pf.metadata
        if meta.num_row_groups == 0 or meta.row_group(0).num_rows == 0:
            return
        group = meta.row_group(0)
        compressed, rows_in_group = sum(group.column(i).total_compressed_size for i in range(group.num_columns)), \
            group.num_rows
    rows = text = 0
    for first, array in iter_text_batches(src, field):
        texts = array.to_pylist()[:rows_in_group - rows]
        _encode(one, Chunk(texts, block_start=(0, first)), field, tally)
        rows += len(texts)
        text += sum(len(t) for t in texts if t)
        if rows >= rows_in_group or text >= share * EXPANSION or compressed * rows >= share * rows_in_group:
            break
    read = round(compressed * rows / rows_in_group)
    tally.read_bytes += read
    tally.sample_bytes += read
