"""The local filesystem as a backend of the storage layer: keys are paths; writes go to a temporary file in the
same folder, fsynced and renamed over the target, so a reader sees the old file or the whole new one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cpt_tasks.storage.backends import Store


class LocalFiles(Store):
    """Local paths (or a shared filesystem mounted at one)."""

    def read(self, key: str) -> bytes | None:
        path = Path(key)
        return path.read_bytes() if path.is_file() else None

    def exists(self, key: str) -> bool:
        return Path(key).is_file()

    def write(self, key: str, data: bytes) -> None:
        path = Path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def list_names(self, key: str) -> list[str]:
        root = Path(key)
        if not root.is_dir():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def remove(self, key: str) -> None:
        Path(key).unlink(missing_ok=True)

    def remove_tree(self, key: str) -> None:
        shutil.rmtree(key, ignore_errors=True)

    def upload(self, local_path: str, key: str) -> None:
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local_path, key)

    def download(self, key: str, local_path: str) -> None:
        Path(local_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(key, local_path)
