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
import os
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


def compress_threads() -> int:
    """zstd's threads for a shard: every usable core. zstd's output is the same for any number of threads from one
    up (python-zstd's default, which streaming's MDSWriter uses, picks one by the machine), and the last shard
    of a conversion is compressed while the tokenizer processes are idle: on two cores it takes 0.05 s, not 0.08."""
    return max(1, len(os.sched_getaffinity(0)))


def _upload_and_delete(path: Path, url: str) -> None:
    upload_file(str(path), url)
    path.unlink()


class TokenShardWriter:
    """Writes rows (1-D int32 arrays, all of one length) to ``out`` as MDS with column ``tokens``.

    A shard is built in place: rows have one length, so a full shard's row count and layout are known, and each
    row is copied once, straight to its slot in a zeroed ``BytesIO``. The header is filled in place and a full
    shard's bytes go to the compressor without a copy, in a background thread that compresses, hashes and
    stores it while the next shard fills a new buffer (the next flush waits for it). A stored shard's buffer is
    freed: the peak is the shard being built, the one before it until it is stored (usually long before the
    next one fills) and a compressed copy.
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
        self.reserved = 0  # bytes kept for a full shard's header, before the first sample
        self.rows = 0
        self.buffer: io.BytesIO | None = None  # the shard being built, sized for a full one
        self.samples: np.ndarray | None = None  # a writable view of its samples, shape (capacity, sample_size)
        self.finisher: ThreadPoolExecutor | None = None
        self.finishing: Future | None = None  # the previous shard's compression, hashing and storing

    def _header_size(self, rows: int) -> int:
        return 4 + 4 * (rows + 1) + len(self.config_data)

    def _start(self, length: int) -> None:
        self.row_length = length
        self.prefix = _array_header(length)
        self.sample_size = 4 + len(self.prefix) + 4 * length
        # MDSWriter starts a new shard when size_limit < 8 + config + (rows + 1) * (sample + 4)
        room = (self.size_limit - 8 - len(self.config_data)) // (self.sample_size + 4)
        self.capacity = max(room, 1)
        self.reserved = self._header_size(self.capacity)
        if room < 1:
            self._flush()  # as MDSWriter does: a sample larger than the limit first flushes the empty shard
        self._reset()

    def _reset(self) -> None:
        # calloc'd, so its pages are mapped as they are first written; freed once stored (memory stays flat)
        self.buffer = io.BytesIO(bytes(self.reserved + self.capacity * self.sample_size))
        # a view of the BytesIO's own bytes (not a copy: nothing else holds them)
        self.samples = np.frombuffer(self.buffer.getbuffer(), dtype=np.uint8)[self.reserved:].reshape(
            self.capacity, self.sample_size)
        self.samples[:, :4 + len(self.prefix)] = np.frombuffer(  # every sample's size and ndarray header
            np.uint32(self.sample_size - 4).tobytes() + self.prefix, dtype=np.uint8)
        self.rows = 0

    def write(self, row: np.ndarray) -> None:
        """Append one row; starts a new shard where MDSWriter would."""
        self.write_rows(np.asarray(row).reshape(1, -1))

    def write_rows(self, rows: np.ndarray) -> None:
        """Append rows (shape (n, length)), each copied once, into place; new shards start where MDSWriter's
        would."""
        if self.row_length is None:
            self._start(rows.shape[1])
        elif rows.shape[1] != self.row_length:
            raise ValueError(f"rows must all hold {self.row_length} tokens, got {rows.shape[1]}")
        data = np.ascontiguousarray(rows, dtype="<i4").view(np.uint8)
        done, skip = 0, 4 + len(self.prefix)
        while done < len(data):
            if self.rows == self.capacity:
                self._flush()
                self._reset()
            take = min(self.capacity - self.rows, len(data) - done)
            self.samples[self.rows:self.rows + take, skip:] = data[done:done + take]
            self.rows += take
            done += take

    def _hash(self, data: bytes, basename: str) -> dict:
        return {"basename": basename, "bytes": len(data),
                "hashes": {algo: hashlib.new(algo, data).hexdigest() for algo in self.hashes}}

    def _flush(self) -> None:
        """Hand the shard built so far to the background thread, once the previous one is stored."""
        count = self.rows
        offsets = (self._header_size(count) + np.arange(count + 1, dtype=np.uint32) * self.sample_size)
        head = np.uint32(count).tobytes() + offsets.astype(np.uint32).tobytes() + self.config_data
        start = self.reserved - len(head)  # a shorter shard's header is smaller than the room kept for it
        buffer, self.buffer, self.samples, self.rows = self.buffer, None, None, 0
        if buffer is not None:
            with buffer.getbuffer() as view:
                view[start:self.reserved] = head
        self._wait()
        if self.finisher is None:
            self.finisher = ThreadPoolExecutor(1, thread_name_prefix="mds-shard")
        self.finishing = self.finisher.submit(self._store, buffer, head, start, count, len(self.shards))

    def _wait(self) -> None:
        """Wait for the shard being stored in the background (raising its error)."""
        if self.finishing is not None:
            finishing, self.finishing = self.finishing, None
            finishing.result()

    def _store(self, buffer: io.BytesIO | None, head: bytes, start: int, count: int, number: int) -> None:
        """Compress, hash and write one shard (and start its upload)."""
        if buffer is None:  # the empty shard MDSWriter writes before a sample larger than the limit
            raw = head
        elif start == 0:
            raw = buffer.getvalue()  # a full shard: the buffer's own bytes, not a copy
        else:
            with buffer.getbuffer() as view:
                raw = view[start:self.reserved + count * self.sample_size].tobytes()
        raw_name = f"shard.{number:05}.mds"
        raw_info, zip_info, data, name = self._hash(raw, raw_name), None, raw, raw_name
        if self.compression:
            import zstd

            _, _, level = self.compression.partition(":")
            data, name = zstd.compress(raw, int(level or 3), compress_threads()), f"{raw_name}.zstd"
            zip_info = self._hash(data, name)
        (self.local / name).write_bytes(data)
        del raw, data, buffer  # the raw shard is freed
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
        self._wait()
        self._stop_finisher()
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
        """Stop the background store and the uploads, and drop the local staging folder of a remote output."""
        try:
            self._wait()
        except Exception:  # the run is failing already; its own error is the one to report
            pass
        self._stop_finisher()
        if self.uploads is not None:
            self.uploads.shutdown(wait=False, cancel_futures=True)
            shutil.rmtree(self.local, ignore_errors=True)

    def _stop_finisher(self) -> None:
        if self.finisher is not None:
            self.finisher.shutdown()
            self.finisher = None
