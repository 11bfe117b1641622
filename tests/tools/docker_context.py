"""List the files `docker build` would send as context for this repository (docker-py's own .dockerignore
matcher); runs in .venv-airflow. Usage: ``docker_context.py ROOT``; prints a JSON list of relative file paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from docker.utils.build import exclude_paths

if __name__ == "__main__":
    root = Path(sys.argv[1])
    patterns = [line.strip() for line in (root / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    files = sorted(p for p in exclude_paths(str(root), patterns) if (root / p).is_file())
    json.dump(files, sys.stdout)
