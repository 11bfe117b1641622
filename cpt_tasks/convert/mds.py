"""A minimal MDS writer for one ``ndarray:int32`` column, byte-identical to ``streaming.MDSWriter``.

Why not ``streaming.MDSWriter`` itself: importing ``streaming`` pulls in torch, torchvision, pandas and
scipy — about 12 s of CPU here, longer than converting 10M tokens. The MDS format (index.json + shards of
``[num_samples][offsets][config][samples]``) is small and documented; tests assert that this writer's
shards and index equal ``streaming.MDSWriter``'s byte for byte and read them back with LLM-Foundry's
``StreamingTextDataset``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cpt_tasks.storage import is_remote, join, upload_file

INDEX_NAME = "index.json"
MDS_VERSION = 2
_SHAPE_DTYPES = ((1 << 8, np.uint8, 0), (1 << 16, np.uint16, 1), (1 << 32, np.uint32, 2))


def parse_size(text: str | int) -> int:
    """'64mb' / '100kb' / 1048576 -> bytes (binary units, as streaming reads them)."""
    if isinstance(text, int):
        return text
    value = text.strip().lower()
    for suffix, factor in (("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("b", 1)):
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)


def _array_header(length: int) -> bytes:
    """The ndarray encoding's header for a 1-D int32 array: ndim/shape-dtype byte, then the shape."""
    for bound, dtype, code in _SHAPE_DTYPES:
        if length < bound:
            return bytes([(1 << 2) | code]) + np.array([length], dtype=dtype).tobytes()
    raise ValueError(f"row of {length} tokens is too long for MDS")


class TokenShardWriter:
    """Writes rows (1-D int32 arrays of one length) to ``out`` as MDS with column ``tokens``."""

    def __init__(self, out: str, compression: str | None, size_limit: int, hashes: list[str]) -> None:
        self.out, self.compression, self.size_limit, self.hashes = out, compression, size_limit, hashes
        self.remote = is_remote(out)
        self.local = Path(tempfile.mkdtemp(prefix="cpt-mds-")) if self.remote else Path(out)
        self.local.mkdir(parents=True, exist_ok=True)
        self.config = {"version": MDS_VERSION, "format": "mds", "compression": compression, "hashes": hashes,
                       "size_limit": size_limit, "column_names": ["tokens"],
                       "column_encodings": ["ndarray:int32"], "column_sizes": [None]}
        self.config_data = json.dumps(self.config, sort_keys=True).encode()
        self.shards: list[dict] = []
        self.buffer = bytearray()  # the current shard's encoded samples, back to back
        self.sizes: list[int] = []
        self.shard_size = 8 + len(self.config_data)
        self.uploads = ThreadPoolExecutor(4) if self.remote else None
        self.pending: list[Future] = []
        self._header: tuple[int, bytes] | None = None

    def write(self, row: np.ndarray) -> None:
        """Append one row; flushes a shard when the size limit would be passed (as MDSWriter does)."""
        if self._header is None or self._header[0] != len(row):
            header = _array_header(len(row))
            self._header = (len(row), header)
        datum = self._header[1] + row.astype(np.int32, copy=False).tobytes()
        sample = np.uint32(len(datum)).tobytes() + datum
        size = len(sample) + 4
        if self.size_limit and self.size_limit < self.shard_size + size:
            self._flush()
        self.buffer += sample
        self.sizes.append(len(sample))
        self.shard_size += size

    def _hash(self, data: bytes, basename: str) -> dict:
        return {"basename": basename, "bytes": len(data),
                "hashes": {algo: hashlib.new(algo, data).hexdigest() for algo in self.hashes}}

    def _flush(self) -> None:
        count = len(self.sizes)
        offsets = np.cumsum([0, *self.sizes]).astype(np.uint32)
        offsets += 4 + len(offsets.tobytes()) + len(self.config_data)
        raw = b"".join((np.uint32(count).tobytes(), offsets.tobytes(), self.config_data, self.buffer))
        self.buffer, self.sizes = bytearray(), []  # release before compressing: peak = raw + compressed
        raw_name = f"shard.{len(self.shards):05}.mds"
        raw_info, zip_info, data, name = self._hash(raw, raw_name), None, raw, raw_name
        if self.compression:
            import zstd

            algo, _, level = self.compression.partition(":")
            data, name = zstd.compress(raw, int(level or 3)), f"{raw_name}.zstd"
            zip_info = self._hash(data, name)
        (self.local / name).write_bytes(data)
        self._upload(name)
        self.shards.append({"samples": count, "raw_data": raw_info, "zip_data": zip_info, **{
            k: self.config[k] for k in ("version", "format", "compression", "hashes", "size_limit",
                                        "column_names", "column_encodings", "column_sizes")}})
        self.shard_size = 8 + len(self.config_data)

    def _upload(self, name: str) -> None:
        if self.uploads is not None:
            self.pending.append(self.uploads.submit(upload_file, str(self.local / name), join(self.out, name)))

    def finish(self) -> int:
        """Flush the last shard and write index.json (after every shard is stored); returns the row count."""
        if self.sizes:
            self._flush()
        index = json.dumps({"version": MDS_VERSION, "shards": self.shards}, sort_keys=True)
        (self.local / INDEX_NAME).write_text(index)
        if self.uploads is not None:
            for future in self.pending:
                future.result()
            upload_file(str(self.local / INDEX_NAME), join(self.out, INDEX_NAME))
            self.uploads.shutdown()
            shutil.rmtree(self.local, ignore_errors=True)
        return sum(s["samples"] for s in self.shards)

    def abort(self) -> None:
        """Stop uploads and drop the local staging folder of a remote output."""
        if self.uploads is not None:
            self.uploads.shutdown(wait=False, cancel_futures=True)
            shutil.rmtree(self.local, ignore_errors=True)
