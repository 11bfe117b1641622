"""Where documents come from: resolve a dataset (local file/folder or HF hub id) to an ordered file list,
and read those files as blocks of complete JSON lines (parquet files are read by ``parquet.py``; object
storage is listed and opened by ``objstore.py``, whose files carry their own verifying ``opener``).

Local and hub sources share one reader: the hub's Dolmino layout ``data/<subset>/…/*.json.zst`` is listed
at a pinned commit (with the files' LFS sha256) and streamed by ``cpt_tasks.data.hub`` (timeouts, retries,
resumption by byte range, every byte checked against the listing), so a local copy of the hub folder converts to
the same bytes. :class:`OpenFiles` lets a conversion that stops early (its budgets met) still read the file it
stopped in to its end and check it.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import Callable, Iterator
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from cpt_tasks.cache import sha256_file_cached
from cpt_tasks.documents.convert_docs import SourceFileInfo, SourceInfo
from cpt_tasks.errors import UserError
from cpt_tasks.storage.network import Network

SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".json.zst", ".jsonl.zst", ".parquet")
BLOCK = 1 << 22
BOM = b"\xef\xbb\xbf"


class NoFilesError(UserError):
    """The dataset exists but holds no file this reader reads (``--source_format auto`` then tries datasets)."""


@dataclass(frozen=True)
class SourceFile:
    """One input file: where to open it, its path relative to the dataset root, size and digest (``sha256``
    holds the digest ``algorithm`` names; algorithm None: the size alone is checked), and for object storage
    the ``opener`` that streams it verified."""

    url: str
    rel: str
    size: int
    sha256: str
    algorithm: str | None = "sha256"  # what ``sha256`` holds: a hub non-LFS file's is its git blob id ("git-sha1")
    opener: Callable[[], object] | None = field(default=None, compare=False, repr=False)  # remote: a checked stream


@dataclass
class Source:
    """A resolved dataset: what the manifest and the fingerprint record about the input."""

    kind: str  # "local", "hub", "s3", "gs" or "datasets"
    dataset: str
    subset: str | None
    split: str
    revision: str | None
    files: list[SourceFile] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def describe(self) -> SourceInfo:
        """What the manifest and the fingerprint record (file URLs omitted: they are machine-specific)."""
        return SourceInfo(kind=self.kind, dataset=self.dataset, subset=self.subset, split=self.split,
                          revision=self.revision,
                          files=[SourceFileInfo(path=f.rel, size=f.size, sha256=f.sha256, algorithm=f.algorithm)
                                 for f in self.files])


def _has_suffix(name: str) -> bool:
    return name.endswith(SUFFIXES)


def resolve_source(dataset: str, subset: str | None, split: str, revision: str | None,
                   network: Network | None = None) -> Source:
    """Resolve ``--dataset``/``--data_subset`` to an ordered, hashed file list; UserError if none. ``network``:
    timeouts and retries of a remote source's listing and reads (default: ConvertConfig's defaults)."""
    path = Path(dataset).expanduser()
    if path.exists() or dataset.startswith((".", "/", "~")) or _has_suffix(dataset):
        return _resolve_local(path, dataset, subset, split)
    if dataset.count("/") != 1:
        raise UserError(f"--dataset {dataset}: no such file or folder, and not a hub id (org/name)")
    return _resolve_hub(dataset, subset, split, revision, network or Network())


def _resolve_local(path: Path, dataset: str, subset: str | None, split: str) -> Source:
    if split != "train":
        raise UserError(f"--splits {split}: a local dataset has one split; use --splits train")
    if path.is_file():
        if not _has_suffix(path.name):
            raise UserError(f"--dataset {dataset}: expected a {'/'.join(SUFFIXES)} file")
        root, files = path.parent, [path]
    elif path.is_dir():
        root = path
        if subset:
            candidates = [path / "data" / subset, path / subset]
            root = next((c for c in candidates if c.is_dir()), None)
            if root is None:
                raise UserError(f"--data_subset {subset}: neither {candidates[0]} nor {candidates[1]} exists")
        files = sorted((p for p in root.rglob("*") if p.is_file() and _has_suffix(p.name)),
                       key=lambda p: p.relative_to(root).as_posix())
    else:
        raise UserError(f"--dataset {dataset}: no such file or folder")
    if not files:
        raise NoFilesError(f"--dataset {dataset}: no {', '.join(SUFFIXES)} files under {root}")
    listed = [SourceFile(url=str(f), rel=f.relative_to(root).as_posix(), size=f.stat().st_size,
                         sha256=sha256_file_cached(f)) for f in files]
    return Source(kind="local", dataset=str(path.resolve()), subset=subset, split=split, revision=None,
                  files=listed)


def _resolve_hub(dataset: str, subset: str | None, split: str, revision: str | None,
                 network: Network) -> Source:
    from cpt_tasks.data.hub import hub_url, list_hub_files, open_hub_file

    if split != "train":
        raise NoFilesError(f"--splits {split}: hub datasets are read from their train files only")
    commit, entries = list_hub_files(dataset, f"data/{subset}" if subset else None, revision, network)
    files = sorted((e for e in entries if _has_suffix(e.path)), key=lambda e: e.path)
    if not files:
        raise NoFilesError(f"--dataset {dataset} --data_subset {subset}: no JSON or parquet files at "
                           f"data/{subset}")
    listed = [SourceFile(url=hub_url(dataset, commit, e.path), rel=e.path, size=e.size, sha256=e.digest,
                         algorithm=e.algorithm, opener=partial(open_hub_file, hub_url(dataset, commit, e.path),
                                                               e.path, e.size, e.digest, e.algorithm, network))
              for e in files]
    return Source(kind="hub", dataset=dataset, subset=subset, split=split, revision=commit, files=listed)


def _open(url: str):
    return open(url, "rb")


def open_raw(src: SourceFile):
    """The file's bytes: a remote file through its ``opener`` (a hub file: a checked, resumable stream); a local
    one through :func:`_open`."""
    return src.opener() if src.opener is not None else _open(src.url)


class OpenFiles:
    """The input files a conversion is reading. :meth:`finish` reads each to its end and checks it against its
    listing: a file the budgets cut short is verified like one read whole."""

    def __init__(self) -> None:
        self.readers: list = []

    def finish(self) -> None:
        """Drain and check every open file (BadDataError naming one that differs from its listing)."""
        for reader in list(self.readers):
            finish_file(reader)


def finish_file(fh) -> None:
    """Read what is left of a checked stream and compare it with its listing (no-op for an unchecked one)."""
    drain = getattr(fh, "drain", None)
    if drain is not None:
        drain()


def _raw_blocks(src: SourceFile, fh) -> Iterator[bytes]:
    """Decompressed content of one open file, in blocks."""
    if src.rel.endswith(".gz"):
        with gzip.GzipFile(fileobj=fh) as gz:
            while block := gz.read(BLOCK):
                yield block
    elif src.rel.endswith(".zst"):
        yield from _zstd_checked_blocks(fh)
    else:
        while block := fh.read(BLOCK):
            yield block


def _zstd_checked_blocks(fh) -> Iterator[bytes]:
    """zstd frames decompressed; EOFError if the last frame is cut short (zstandard stays silent)."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    dobj, in_frame, data = dctx.decompressobj(), False, b""
    while True:
        data = data or fh.read(BLOCK)
        if not data:
            break
        in_frame = True
        out = dobj.decompress(data)
        data = b""
        if out:
            yield out
        if dobj.eof:
            data, dobj, in_frame = dobj.unused_data, dctx.decompressobj(), False
    if in_frame:
        raise EOFError("zstd stream ended before the end of its frame (file truncated?)")


def read_blocks(src: SourceFile, files: OpenFiles | None = None) -> Iterator[bytes]:
    """The decompressed content of one file in blocks, checked against its listing at its end (a hub file);
    UserError naming the file if it is unreadable, BadDataError if its bytes are not the listed ones.
    ``files``: where the open file is registered while it is read (see :class:`OpenFiles`)."""
    with open_raw(src) as fh:
        if files is not None:
            files.readers.append(fh)
        try:
            yield from _raw_blocks(src, fh)
            finish_file(fh)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # OSError (network, disk) stays retryable
            finish_file(fh)  # undecodable because its bytes differ from the listing: bad data (exit 3)
            raise UserError(f"{src.rel}: unreadable or truncated file: {exc}") from exc
        except Exception as exc:  # zstandard.ZstdError has no stable import path across versions
            if type(exc).__name__ == "ZstdError":
                finish_file(fh)
                raise UserError(f"{src.rel}: corrupt zstd data: {exc}") from exc
            raise
        finally:
            if files is not None and fh in files.readers:
                files.readers.remove(fh)


def open_blocks(src: SourceFile, files: OpenFiles | None = None) -> tuple[bool, Iterator[bytes]]:
    """(is it one JSON array?, its decompressed blocks): the file is opened once and its head peeked.

    A ``.json`` file whose content starts with ``[`` is one array of records; anything else is JSON lines.
    """
    blocks = read_blocks(src, files)
    head: list[bytes] = []
    for block in blocks:
        head.append(block)
        if block.strip():
            break
    if head and head[0].startswith(BOM):  # a UTF-8 byte order mark is not part of the first record
        head[0] = head[0][len(BOM):]
    first = b"".join(head).lstrip()[:1]
    is_array = src.rel.endswith((".json", ".json.gz", ".json.zst")) and first == b"["
    return is_array, itertools.chain(head, blocks)


def iter_lines(files: list[SourceFile], opened: OpenFiles | None = None) -> Iterator[tuple[int, int, bytes]]:
    """Every non-blank line as (file index, 1-based line number, bytes), files in the given order.

    A ``.json`` file holding one top-level array is read whole and yields one line per element.
    """
    for index, src in enumerate(files):
        is_array, blocks = open_blocks(src, opened)
        if is_array:
            yield from array_lines(index, src, b"".join(blocks))
        else:
            yield from _file_lines(index, blocks)


def _file_lines(index: int, blocks: Iterator[bytes]) -> Iterator[tuple[int, int, bytes]]:
    carry, line_no = b"", 0
    for block in blocks:
        lines = (carry + block).split(b"\n")
        carry = lines.pop()
        for line in lines:
            line_no += 1
            if line.strip():
                yield index, line_no, line
    if carry.strip():
        yield index, line_no + 1, carry


def array_lines(index: int, src: SourceFile, data: bytes) -> Iterator[tuple[int, int, bytes]]:
    try:
        records = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{src.rel}: invalid JSON array: {exc}") from exc
    if not isinstance(records, list):
        raise UserError(f"{src.rel}: expected JSON lines or one JSON array of records")
    for number, record in enumerate(records, start=1):
        yield index, number, orjson.dumps(record)
