"""Shared fixtures: the Llama 3 tokenizer folder, the generated sample data, a real S3-compatible server
on 127.0.0.1 (moto's server mode), helpers to run the CLI and read MDS back with ``streaming``, and for training
a small verified mix of the sample and a tiny random Llama, both in the small test tokenizer (the data
contract's tests use the real Llama 3 tokenizer), and one short training run on them, killed and resumed, that
the single-process resume test and the evaluation and tracking tests share."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CPT = [sys.executable, "-m", "cpt_tasks.cli"]


@contextmanager
def environment(env: dict[str, str]):
    """``env`` set in os.environ for the block; every variable as it was afterwards (unset ones unset again)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session", autouse=True)
def _shm_prefix_guard():
    """The tests read MDS back with StreamingDataset in this process while the other session trains: the same
    guard as the jobs' workers against streaming's shared-memory prefix race (cpt_tasks.runs.shm_prefix)."""
    from cpt_tasks.runs.shm_prefix import guard_shm_prefix

    guard_shm_prefix()


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
    from cpt_local.samples.sample_mix import write_sample

    out = tmp_path_factory.mktemp("sample")
    write_sample(out)
    return out


@dataclass
class CliRun:
    """What one ``cpt-tasks`` call returned and printed."""

    returncode: int
    stdout: str
    stderr: str


def call_cli(*args: object, check: bool = False) -> CliRun:
    """``cpt-tasks ARGS`` in this process: the same parsing, exit status and output as the command, without
    a new interpreter's start-up (use :func:`run_cli` where the process itself is under test)."""
    from cpt_tasks.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code if isinstance(exc.code, int) else 1
    run = CliRun(code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"cpt-tasks {' '.join(map(str, args))} exited {code}:\n{run.stderr}")
    return run


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
    with environment(env):
        import boto3

        boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"]).create_bucket(Bucket="cpt")
        yield env
    server.stop()


CONCAT = 128
SUBSETS = ["dclm", "flan", "math"]
# three subsets (proportions renormalized): 13 + 4 + 5 train rows of 128 tokens and one val row each
MIX = dict(subsets=SUBSETS, total_tokens=3072, concat_tokens=CONCAT, val_fraction=0,
           overrides={name: {"val_tokens": CONCAT} for name in SUBSETS})
MIX_TOKENS = 22 * CONCAT


def make_verified(root: Path, sample_dir: Path, tokenizer_dir: Path, **plan_args) -> Path:
    """Plan, convert and verify the sample into ``root``; the verification report's path."""
    from cpt_tasks.configs.plan_config import PlanConfig
    from cpt_tasks.configs.verify_config import VerifyConfig
    from cpt_tasks.convert.convert_job import convert
    from cpt_tasks.documents import write_document
    from cpt_tasks.plan.plan_job import plan
    from cpt_tasks.verify.verify_job import verify

    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root=str(root / "data"),
                           num_workers=0, **plan_args))
    write_document(str(root / "plan.json"), body)
    for sub in body.subsets:
        convert(sub.convert, progress_interval=0)
    result = verify(VerifyConfig(plan=str(root / "plan.json"), num_workers=0))
    assert result.ok
    return Path(result.paths["json"])


def made_by_setup(relative: str) -> Path | None:
    """A file or folder that `make setup` made under $CPT_HOME, if it is there."""
    path = Path(os.environ.get("CPT_HOME", ROOT / ".cpt")) / relative
    return path if path.exists() else None


@pytest.fixture(scope="session")
def small_tokenizer_dir(tmp_path_factory, sample_dir) -> Path:
    """The small test tokenizer (1,024 BPE ids + Llama 3's BOS/EOS, trained on the sample) of `make setup`."""
    made = made_by_setup("tokenizer/small/tokenizer.json")
    if made is not None:
        return made.parent
    from cpt_local.samples.small_tokenizer import write_small_tokenizer

    return write_small_tokenizer(sample_dir, tmp_path_factory.mktemp("tok") / "small")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, small_tokenizer_dir) -> Path:
    """A random 2-layer Llama over the small tokenizer, saved with save_pretrained (the training tests' model)."""
    made = made_by_setup("models/tiny-small/config.json")
    if made is not None:
        return made.parent
    from cpt_local.samples.tiny_model import write_random_llama

    return write_random_llama(tmp_path_factory.mktemp("model") / "tiny", small_tokenizer_dir)


@pytest.fixture(scope="session")
def mix_report(tmp_path_factory, sample_dir, small_tokenizer_dir) -> Path:
    """The verification report of a small verified mix of the sample (``MIX``), in the small tokenizer."""
    return make_verified(tmp_path_factory.mktemp("mix"), sample_dir, small_tokenizer_dir, **MIX)


def edit_plan(location: str, edit) -> None:
    """Change a written plan in place (``edit(plan)``) and give it its new fingerprint, as a plan made with
    those values would have: what a test needs to point a plan elsewhere or disagree with its data."""
    from cpt_tasks.documents import parse_document, write_document
    from cpt_tasks.documents.plan_docs import Plan
    from cpt_tasks.storage import read_bytes

    body = parse_document(read_bytes(location), Plan, location)
    edit(body)
    body.fingerprint = body.content_fingerprint()
    write_document(location, body)


def copy_run(source: str, target: str) -> None:
    """Copy a planned and converted root (``plan.json`` and its data; local or object storage) to ``target``
    and point the copied plan at the copy."""
    from cpt_tasks.storage import join, store_for

    # one backend (one client) for each side: a client per object would make most of a copy's time on S3
    (source_store, source_key), (target_store, target_key) = store_for(source), store_for(target)
    for name in source_store.list_names(source_key):
        target_store.write(f"{target_key.rstrip('/')}/{name}", source_store.read(f"{source_key.rstrip('/')}/{name}"))

    def repoint(body) -> None:
        body.root = body.root.replace(source, target, 1)
        for sub in body.subsets:
            sub.convert = sub.convert.model_copy(update={"out_root": sub.out_root.replace(source, target, 1)})

    edit_plan(join(target, "plan.json"), repoint)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, mix_report, tiny_model) -> dict:
    """The one single-process run of `cpt-tasks train` on ``MIX`` (6 steps of the tiny model), given a tracking
    store that is down (training must go on): killed (SIGKILL) once its first checkpoint exists, then run again,
    it resumes from that checkpoint and finishes. Shared by the resume test (tests/cpt_tasks/test_train.py), the
    evaluation and the tracking tests: ``kill_and_resume``'s record (the rerun's result and stderr, the killed
    attempt's step, the flags and folders) and the tracking store it was given."""
    from train_helpers import kill_and_resume
    from ui.airflow_server import find_free_port

    down = f"http://127.0.0.1:{find_free_port()}"  # nothing listens there
    run = kill_and_resume(mix_report, tiny_model, tmp_path_factory.mktemp("trained"), "manual__shared",
                          env={"MLFLOW_TRACKING_URI": down})
    return {**run, "tracking_uri": down, "report": str(mix_report)}


@pytest.fixture
def endpoint(monkeypatch):
    """Point the real client at a URL (its module constants are read when each call is made) with offline mode
    off and fresh sessions; short backoff so retries take milliseconds."""
    from huggingface_hub import constants
    from huggingface_hub.utils import reset_sessions

    def point(url: str) -> None:
        monkeypatch.setattr(constants, "ENDPOINT", url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        reset_sessions()

    from cpt_tasks.storage import network

    monkeypatch.setattr(network, "BACKOFF_BASE", 0.01)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield point
    reset_sessions()


@pytest.fixture(scope="session")
def gcs_server():
    """A Google Cloud Storage emulator (gcp-storage-emulator: the JSON API, in memory) on 127.0.0.1, on a free
    port, in a thread, with bucket `cpt`; yields its env (``STORAGE_EMULATOR_HOST``, which google-cloud-storage
    reads when a client is made: anonymous credentials, no project)."""
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket="cpt")
    server.start()
    host, port = server._api._httpd.server_address[:2]  # the port the OS chose
    env = {"STORAGE_EMULATOR_HOST": f"http://{host}:{port}"}
    with environment(env):
        yield env
    server.stop()
