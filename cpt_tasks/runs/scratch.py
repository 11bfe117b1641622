"""The local scratch root of a job: ``--local_dir`` when given, else ``<tmp>/cpt-<job>``."""

from __future__ import annotations

import tempfile
from pathlib import Path


def scratch_root(local_dir: str | None, job: str) -> Path:
    """Where a job keeps its local files (staged models, data caches, configs, worker results)."""
    return Path(local_dir or Path(tempfile.gettempdir()) / f"cpt-{job}")
