"""Helpers for the container tests (``make test-images``): run a command in a container of a built image under
the pods' security context, with podman and the project's containers.conf."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TASKS_IMAGE = os.environ.get("CPT_TASKS_IMAGE", "localhost/cpt-tasks:dev")
AIRFLOW_IMAGE = os.environ.get("CPT_AIRFLOW_IMAGE", "localhost/cpt-airflow:dev")
os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "docker" / "podman" / "containers.conf"))
# The pods' security context (cpt_pipeline/runners.py), as `podman run` flags: the image's own user (no
# --user: the image must default to uid 1000), read-only root filesystem with /tmp a tmpfs and /cache a fresh
# volume, no capabilities, no privilege escalation, no network.
POD_FLAGS = ["--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777", "--volume", "/cache",
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", "none"]


def podman(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def run_in(image: str, *command: str, volumes: tuple[str, ...] = (), env: dict | None = None,
           pod_like: bool = True) -> subprocess.CompletedProcess:
    """``podman run --rm`` of ``command`` in ``image`` (pod-like by default); the completed process."""
    flags = [*(POD_FLAGS if pod_like else ["--network", "none"])]
    for volume in volumes:
        flags += ["--volume", volume]
    for key, value in (env or {}).items():
        flags += ["--env", f"{key}={value}"]
    return podman("run", "--rm", *flags, image, *command)
