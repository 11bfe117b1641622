"""Shared fixtures: the Llama 3 tokenizer folder, the generated sample data, a real S3-compatible server
on 127.0.0.1 (moto's server mode), and helpers to run the CLI and read MDS back with ``streaming``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CPT = [sys.executable, "-m", "cpt_tasks.cli"]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """The Llama 3 tokenizer made by `make setup`, or a fresh export."""
    made = Path(os.environ.get("CPT_HOME", ROOT / ".cpt")) / "tokenizer" / "llama3"
    if (made / "tokenizer.json").is_file():
        return made
    from cpt_tasks.tokenizer import export_llama3

    return export_llama3(tmp_path_factory.mktemp("tok") / "llama3")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The Dolmino-shaped sample (six subsets, hub layout)."""
    made = Path(os.environ.get("CPT_HOME", ROOT / ".cpt")) / "sample" / "dolmino"
    if (made / ".complete").is_file():
        return made
    from cpt_tasks.sample_data import write_sample

    out = tmp_path_factory.mktemp("sample")
    write_sample(out)
    return out


def run_cli(*args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run `cpt-tasks ARGS` in a subprocess; return the completed process (text output)."""
    proc = subprocess.run([*CPT, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"cpt-tasks {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def read_rows(folder: str | Path) -> np.ndarray:
    """Every row of an MDS split, read with mosaicml-streaming's own reader, shape (n, concat)."""
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    ds = StreamingDataset(local=str(folder), shuffle=False, batch_size=1)
    rows = [np.asarray(ds[i]["tokens"]) for i in range(ds.num_samples)]
    return np.stack(rows) if rows else np.empty((0, 0), dtype=np.int32)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible HTTP server on 127.0.0.1 (moto server mode) with bucket `cpt`; yields its env."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"S3_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"]).create_bucket(Bucket="cpt")
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()
