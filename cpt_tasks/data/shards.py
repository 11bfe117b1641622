"""Reading an MDS split back: each shard's existence, size and hash against ``index.json``, and every row's
shape and token ids (all rows of a shard at once in numpy; row by row only to name what is wrong). Runs per shard
in worker processes; works on local paths and object storage."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from cpt_tasks.layout import COLUMN_ENCODING, COLUMN_NAME, MDS_INDEX_FILE
from cpt_tasks.storage import join, read_bytes


@dataclass
class ShardCheck:
    """The outcome of one shard: problems found, rows read, and a few rows kept for decoding."""

    basename: str
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    sample_rows: list[list[int]] = field(default_factory=list)


def read_index(split_url: str) -> dict | None:
    """The split's index.json, or None if missing or unreadable."""
    data = read_bytes(join(split_url, MDS_INDEX_FILE))
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def _check_file(data: bytes | None, info: dict, problems: list[str]) -> bool:
    name = info["basename"]
    if data is None:
        problems.append(f"{name}: missing")
        return False
    if len(data) != info["bytes"]:
        problems.append(f"{name}: {len(data)} bytes, index says {info['bytes']}")
        return False
    for algo, expected in info.get("hashes", {}).items():
        if hashlib.new(algo, data).hexdigest() != expected:
            problems.append(f"{name}: {algo} differs from the index")
            return False
    return True


def check_shard(split_url: str, shard: dict, concat: int, vocab_size: int, keep: int) -> ShardCheck:
    """Check one shard listed in an index; keep up to ``keep`` rows for decoding."""
    raw_info, zip_info = shard["raw_data"], shard.get("zip_data")
    stored = zip_info or raw_info
    result = ShardCheck(stored["basename"])
    data = read_bytes(join(split_url, stored["basename"]))
    if not _check_file(data, stored, result.problems):
        return result
    if zip_info:
        import zstd

        try:
            data = zstd.decompress(data)
        except Exception as exc:  # noqa: BLE001 - any decompression failure is a finding
            result.problems.append(f"{stored['basename']}: cannot decompress: {exc}")
            return result
        if not _check_file(data, raw_info, result.problems):
            return result
        # Streaming decompresses a local dataset's shards beside the originals and reads those copies from
        # then on: a damaged copy would be trained on, so it is checked like the original.
        copy = read_bytes(join(split_url, raw_info["basename"]))
        if copy is not None and not _check_file(copy, raw_info, result.problems):
            result.problems[-1] += " (the decompressed copy that streaming reads)"
            return result
    if shard.get("column_encodings") != [COLUMN_ENCODING] or shard.get("column_names") != [COLUMN_NAME]:
        result.problems.append(f"{stored['basename']}: columns {shard.get('column_names')} "
                               f"{shard.get('column_encodings')}, expected {COLUMN_NAME} {COLUMN_ENCODING}")
        return result
    count = int(np.frombuffer(data, np.uint32, 1, 0)[0])
    offsets = np.frombuffer(data, np.uint32, count + 1, 4)
    if count != shard["samples"]:
        result.problems.append(f"{stored['basename']}: holds {count} samples, index says {shard['samples']}")
    if _check_rows_at_once(data, offsets, count, concat, vocab_size, keep, result):
        return result
    bad_rows, bad_ids = 0, 0  # some row is wrong: find which, one at a time
    for i in range(count):
        sample = data[offsets[i]:offsets[i + 1]]
        ids = _row(sample)
        if ids is None or len(ids) != concat:
            bad_rows += 1
            continue
        if ids.min() < 0 or ids.max() >= vocab_size:
            bad_ids += 1
            continue
        if len(result.sample_rows) < keep:
            result.sample_rows.append(ids.tolist())
    if bad_rows:
        result.problems.append(f"{stored['basename']}: {bad_rows} rows are not {concat} int32 tokens")
    if bad_ids:
        result.problems.append(f"{stored['basename']}: {bad_ids} rows hold ids outside [0, {vocab_size})")
    result.rows = count
    return result


def _check_rows_at_once(data: bytes, offsets: np.ndarray, count: int, concat: int, vocab_size: int, keep: int,
                        result: ShardCheck) -> bool:
    """Every row checked in a few numpy operations (the shard's rows are all one encoding of ``concat`` ids, so
    they form one 2-D block): True when each holds ``concat`` valid ids (``result`` filled), False when any does
    not (the caller then names the problems row by row)."""
    width = 1 if concat < 1 << 8 else 2 if concat < 1 << 16 else 4
    code = {1: 0, 2: 1, 4: 2}[width]
    head = bytes([(1 << 2) | code]) + concat.to_bytes(width, "little")
    size = 4 + len(head) + 4 * concat  # [uint32 size][head][ids]
    if count == 0:
        return True
    if not (np.diff(offsets.astype(np.int64)) == size).all() or int(offsets[-1]) > len(data):
        return False
    block = np.frombuffer(data, np.uint8, count * size, int(offsets[0])).reshape(count, size)
    prefix = np.frombuffer(np.uint32(size - 4).tobytes() + head, np.uint8)
    if not (block[:, :len(prefix)] == prefix).all():
        return False
    ids = np.ascontiguousarray(block[:, len(prefix):]).view(np.int32)
    if ids.min() < 0 or ids.max() >= vocab_size:
        return False
    result.sample_rows = [row.tolist() for row in ids[:keep]]
    result.rows = count
    return True


def _row(sample: bytes) -> np.ndarray | None:
    """The int32 ids of one encoded sample ([uint32 size][ndim/shape-dtype byte][shape][values])."""
    if len(sample) < 6:
        return None
    size = int(np.frombuffer(sample, np.uint32, 1, 0)[0])
    datum = sample[4:]
    if size != len(datum):
        return None
    head = datum[0]
    ndim, code = head >> 2, head & 3
    if ndim != 1 or code > 3:
        return None
    width = 1 << code
    length = int.from_bytes(datum[1:1 + width], "little")
    values = datum[1 + width:]
    if len(values) != 4 * length:
        return None
    return np.frombuffer(values, np.int32)
