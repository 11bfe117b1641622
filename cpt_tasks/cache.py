"""On-disk caches of the jobs ($CPT_CACHE_DIR, else ~/.cache/cpt-pipeline): where they live, atomic writes,
and input-file hashes remembered by their stat. Every cache is an optimisation: unwritable means no cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file_cached(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime_ns, inode) as git and rsync do, so that an
    unchanged rerun over a large local dataset does not read it all again to learn it has nothing to do."""
    stat = path.stat()
    # ctime cannot be set by tools that restore mtime (cp -p, touch -r, rsync -t): git keys its index so too
    key = [str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]
    root = cache_root("sha256")
    entry = root / (hashlib.sha1(key[0].encode()).hexdigest() + ".json") if root is not None else None
    if entry is not None:
        try:
            cached = json.loads(entry.read_text())
            if cached["key"] == key:
                return cached["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    digest = sha256_file(path)
    if entry is not None:
        write_atomic(entry, json.dumps({"key": key, "sha256": digest}).encode())
    return digest


def cache_root(kind: str = "tiktoken") -> Path | None:
    """A cache folder ($CPT_CACHE_DIR/<kind>, else ~/.cache/cpt-pipeline/<kind>); None if unwritable."""
    root = Path(os.environ.get("CPT_CACHE_DIR") or Path.home() / ".cache" / "cpt-pipeline") / kind
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return root if os.access(root, os.W_OK) else None


def write_atomic(path: Path, data: bytes) -> bool:
    """Write a cache file atomically; best effort: a full or read-only disk just means no cache (False)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return False
