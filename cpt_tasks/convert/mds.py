"""A minimal MDS writer for one ``ndarray:int32`` column, byte-identical to ``streaming.MDSWriter``.

Why not ``streaming.MDSWriter`` itself: importing ``streaming`` pulls in torch, torchvision, pandas and
scipy — about 12 s of CPU here, longer than converting 10M tokens. The MDS format (index.json + shards of
``[num_samples][offsets][config][samples]``) is small and documented; tests assert that this writer's
shards and index equal ``streaming.MDSWriter``'s byte for byte and read them back with LLM-Foundry's
``StreamingTextDataset``.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cpt_tasks.layout import COLUMN_ENCODING, COLUMN_NAME, MDS_INDEX_FILE
from cpt_tasks.storage import is_remote, join, upload_file

MDS_VERSION = 2
_SHAPE_DTYPES = ((1 << 8, np.uint8, 0), (1 << 16, np.uint16, 1), (1 << 32, np.uint32, 2))


def _array_header(length: int) -> bytes:
    """The ndarray encoding's header for a 1-D int32 array: ndim/shape-dtype byte, then the shape."""
    for bound, dtype, code in _SHAPE_DTYPES:
        if length < bound:
            return bytes([(1 << 2) | code]) + np.array([length], dtype=dtype).tobytes()
    raise ValueError(f"row of {length} tokens is too long for MDS")


MAX_PENDING_UPLOADS = 4


def _upload_and_delete(path: Path, url: str) -> None:
    upload_file(str(path), url)
    path.unlink()


class TokenShardWriter:
    """Writes rows (1-D int32 arrays, all of one length) to ``out`` as MDS with column ``tokens``.

    Memory: a shard is built in one ``BytesIO`` that starts with room for the header of a full shard
    (rows have one length, so a full shard's row count is known), the header is filled in place and the
    buffer handed to the compressor without a copy: the peak is one raw shard plus its compressed copy.
    """

    def __init__(self, out: str, compression: str | None, size_limit: int, hashes: list[str]) -> None:
        self.out, self.compression, self.size_limit, self.hashes = out, compression, size_limit, hashes
        self.remote = is_remote(out)
        self.local = Path(tempfile.mkdtemp(prefix="cpt-mds-")) if self.remote else Path(out)
        self.local.mkdir(parents=True, exist_ok=True)
        self.config = {"version": MDS_VERSION, "format": "mds", "compression": compression, "hashes": hashes,
                       "size_limit": size_limit, "column_names": [COLUMN_NAME],
                       "column_encodings": [COLUMN_ENCODING], "column_sizes": [None]}
        self.config_data = json.dumps(self.config, sort_keys=True).encode()
        self.shards: list[dict] = []
        self.uploads = ThreadPoolExecutor(4) if self.remote else None
        self.pending: list[Future] = []
        self.row_length: int | None = None
        self.sample_size = 0  # bytes of one encoded sample
        self.capacity = 0  # rows of a full shard
        self.rows = 0
        self.buffer = io.BytesIO()

    def _header_size(self, rows: int) -> int:
        return 4 + 4 * (rows + 1) + len(self.config_data)

    def _start(self, length: int) -> None:
        self.row_length = length
        self.prefix = _array_header(length)
        self.sample_size = 4 + len(self.prefix) + 4 * length
        # MDSWriter starts a new shard when size_limit < 8 + config + (rows + 1) * (sample + 4)
        room = (self.size_limit - 8 - len(self.config_data)) // (self.sample_size + 4) if self.size_limit else 1 << 31
        self.capacity = max(room, 1)
        if self.size_limit and room < 1:
            self._flush()  # as MDSWriter does: a sample larger than the limit first flushes the empty shard
        self._reset()

    def _reset(self) -> None:
        self.buffer = io.BytesIO()
        self.buffer.write(bytes(self._header_size(self.capacity)))
        self.rows = 0

    def write(self, row: np.ndarray) -> None:
        """Append one row; starts a new shard where MDSWriter would."""
        if self.row_length is None:
            self._start(len(row))
        elif len(row) != self.row_length:
            raise ValueError(f"rows must all hold {self.row_length} tokens, got {len(row)}")
        if self.rows == self.capacity:
            self._flush()
            self._reset()
        self.buffer.write(np.uint32(self.sample_size - 4).tobytes() + self.prefix)
        self.buffer.write(row.astype(np.int32, copy=False).tobytes())
        self.rows += 1

    def _hash(self, data: bytes, basename: str) -> dict:
        return {"basename": basename, "bytes": len(data),
                "hashes": {algo: hashlib.new(algo, data).hexdigest() for algo in self.hashes}}

    def _flush(self) -> None:
        count = self.rows
        header = self._header_size(count)
        offsets = (header + np.arange(count + 1, dtype=np.uint32) * self.sample_size).astype(np.uint32)
        head = np.uint32(count).tobytes() + offsets.tobytes() + self.config_data
        reserved = self._header_size(self.capacity) if self.row_length is not None else 0
        if count == self.capacity and reserved:
            self.buffer.seek(0)
            self.buffer.write(head)
            raw = self.buffer.getvalue()  # hands over the buffer's bytes without copying them
        else:  # a shorter last shard: its header is smaller than the room kept for it
            raw = head + self.buffer.getbuffer()[reserved:].tobytes()
        self.buffer = io.BytesIO()
        raw_name = f"shard.{len(self.shards):05}.mds"
        raw_info, zip_info, data, name = self._hash(raw, raw_name), None, raw, raw_name
        if self.compression:
            import zstd

            _, _, level = self.compression.partition(":")
            data, name = zstd.compress(raw, int(level or 3)), f"{raw_name}.zstd"
            del raw
            zip_info = self._hash(data, name)
        (self.local / name).write_bytes(data)
        self._upload(name)
        self.shards.append({"samples": count, "raw_data": raw_info, "zip_data": zip_info, **{
            k: self.config[k] for k in ("version", "format", "compression", "hashes", "size_limit",
                                        "column_names", "column_encodings", "column_sizes")}})

    def _upload(self, name: str) -> None:
        """Send a finished shard to object storage and delete the local copy (at most 4 shards wait)."""
        if self.uploads is None:
            return
        for finished in [f for f in self.pending if f.done()]:
            finished.result()  # an upload that failed fails the run here
        self.pending = [f for f in self.pending if not f.done()]
        while len(self.pending) >= MAX_PENDING_UPLOADS:
            self.pending.pop(0).result()
        self.pending.append(self.uploads.submit(_upload_and_delete, self.local / name, join(self.out, name)))

    def finish(self) -> int:
        """Flush the last shard and write index.json (after every shard is stored); returns the row count."""
        if self.rows:
            self._flush()
        index = json.dumps({"version": MDS_VERSION, "shards": self.shards}, sort_keys=True)
        (self.local / MDS_INDEX_FILE).write_text(index)
        if self.uploads is not None:
            for future in self.pending:
                future.result()
            upload_file(str(self.local / MDS_INDEX_FILE), join(self.out, MDS_INDEX_FILE))
            self.uploads.shutdown()
            shutil.rmtree(self.local, ignore_errors=True)
        return sum(s["samples"] for s in self.shards)

    def abort(self) -> None:
        """Stop uploads and drop the local staging folder of a remote output."""
        if self.uploads is not None:
            self.uploads.shutdown(wait=False, cancel_futures=True)
            shutil.rmtree(self.local, ignore_errors=True)
