"""The ``datasets`` reading path (``--source_format datasets``) against a local Hub (tests/hub_server.py) that
stalls: the tree listing (which huggingface_hub sends without any timeout of its own) or a file's bytes. The
conversion runs as its own process, as a pod runs it (``datasets`` reads ``HF_ENDPOINT`` and the offline switch
when imported), and must fail with exit 1 and one line naming the host and the dataset, after exactly
``max_retries + 1`` attempts, within ``Network.worst_case_seconds()`` of the stalled request."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from conftest import CPT, ROOT
from hub_server import HubRepo, HubServer

from cpt_tasks.storage.network import Network

DATASET = "org/corpus"
NETWORK = Network(connect_timeout=0.3, read_timeout=0.3, max_retries=2)
EXIT = 2.0  # seconds the process may take to stop once it gave up (interpreter and library teardown)


class TimedLog(list):
    """HubServer.log that also notes when each request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item) -> None:
        self.times.append(time.monotonic())
        super().append(item)


@pytest.fixture
def hub():
    """A Hub dataset of one CSV file (so ``datasets`` infers the csv builder), stored in LFS (resolve → /cdn/)."""
    rows = "".join(f"{i},document number {i}\n" for i in range(50))
    server = HubServer(HubRepo(DATASET, {"data/train.csv": f"id,text\n{rows}".encode()}))
    handler = server.httpd.RequestHandlerClass
    reply_json = handler.reply_json

    def reply_without_body_to_head(self, status, payload, code=None, link=None):
        if self.command != "HEAD":
            return reply_json(self, status, payload, code, link)
        self.send_response(status)  # a HEAD answer has no body (the client would read it as the next response)
        self.send_header("Content-Length", "0")
        if code:
            self.send_header("X-Error-Code", code)
        self.end_headers()
        return None

    handler.reply_json = reply_without_body_to_head
    server.log = TimedLog()
    yield server.start()
    server.stop()


@pytest.mark.parametrize("stalled", ["tree", "cdn"])  # the listing of the data files; the bytes of one
def test_stalled_hub_fails_within_the_bound(hub, stalled, tokenizer_dir, tmp_path):
    hub.faults.stall = {stalled}
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_DATASETS_CACHE=str(tmp_path / "hf-datasets"))
    bound = NETWORK.worst_case_seconds()
    run = subprocess.run([*CPT, "convert", "--dataset", DATASET, "--source_format", "datasets",
                          "--tokenizer", str(tokenizer_dir), "--out_root", str(tmp_path / "out"),
                          "--concat_tokens", "16", "--num_workers", "0",
                          "--connect_timeout", str(NETWORK.connect_timeout),
                          "--read_timeout", str(NETWORK.read_timeout), "--max_retries", str(NETWORK.max_retries)],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=60 + bound)
    ended = time.monotonic()
    assert run.returncode == 1, run.stderr
    attempts = [t for t, (_, path, _) in zip(hub.log.times, hub.log, strict=True)
                if path.startswith(f"/api/datasets/{DATASET}/tree/" if stalled == "tree" else "/cdn/")]
    assert len(attempts) == NETWORK.max_retries + 1, hub.log
    took = ended - attempts[0]
    assert (NETWORK.max_retries + 1) * NETWORK.read_timeout <= took < bound + EXIT, (took, bound)
    line = run.stderr.strip().splitlines()[-1]
    host = hub.url.removeprefix("http://")
    assert line.startswith(f"cpt-tasks convert: failed: {host}: --dataset {DATASET}"), run.stderr
    assert f"read timeout ({NETWORK.max_retries + 1} attempts)" in line and "Traceback" not in run.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()
