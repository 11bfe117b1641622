"""The storage layer itself: its one URL parser (and why it drops a key's leading slashes), the dispatch to one
backend per scheme, the local backend, and the bounds every remote call runs under, outputs included: a server
that accepts and never answers, one that answers 503, and one that refuses, for S3 and GCS alike, each fails
within ``Network.worst_case_seconds`` as TransientError naming the endpoint, the call and the object."""

import re
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from cpt_tasks.data.objstore import resolve_objects
from cpt_tasks.errors import TransientError, UserError
from cpt_tasks.storage import (BACKENDS, REMOTE_SCHEMES, GCSStore, LocalFiles, Network, ObjectURL, S3Store, exists,
                               is_remote, join, list_files, object_store, parse_url, read_bytes, remove_file,
                               remove_tree, store_for, upload_file, write_bytes_atomic, download_file)

ROOT = Path(__file__).resolve().parents[2]
QUICK = Network(connect_timeout=0.5, read_timeout=0.3, max_retries=1)


@pytest.mark.parametrize("url,parsed", [
    ("s3://bucket/a/b.json", ("s3", "bucket", "a/b.json")),
    ("GS://bucket/a/", ("gs", "bucket", "a/")),
    ("s3://bucket//a//b", ("s3", "bucket", "a//b")),  # leading slashes of the key dropped, inner ones kept
    ("s3://bucket", ("s3", "bucket", "")),
    ("gs://bucket/", ("gs", "bucket", "")),
    ("s3://bucket/exp#3?/x", ("s3", "bucket", "exp#3?/x")),  # '#' and '?' are characters of a key
    ("/data/out//x", ("", "", "/data/out//x")),  # a local path is kept as written
    ("relative/x", ("", "", "relative/x")),
    ("hf://datasets/org/name", ("", "", "hf://datasets/org/name")),  # no storage scheme: not remote
])
def test_parse_url(url, parsed):
    assert parse_url(url) == parsed and parse_url(url).remote == bool(parsed[0]) == is_remote(url)


@pytest.mark.parametrize("url", ["s3://b/k", "s3://b//k/x", "s3://b///k", "gs://b/", "gs://b", "s3://b/a//b/"])
def test_the_key_is_where_streaming_and_composer_put_it(url):
    """mosaicml-streaming's uploaders and Composer's object stores name an object ``urlparse(url).path.lstrip('/')``
    in bucket ``netloc``; the manifests and indexes written here must land beside their shards."""
    theirs = urlparse(url)
    assert parse_url(url)[1:] == (theirs.netloc, theirs.path.lstrip("/"))


def test_object_url_and_join():
    parsed = parse_url("s3://b//runs/x")
    assert str(parsed) == "s3://b/runs/x" and parsed.with_key("y/z") == "s3://b/y/z"
    assert str(ObjectURL("", "", "/tmp/p")) == "/tmp/p"
    assert join("s3://b/root/", "/train/", "index.json") == "s3://b/root/train/index.json"
    assert join("/data/root", "train", "index.json") == "/data/root/train/index.json"


def test_one_backend_per_scheme(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # a client is made, nothing is asked
    assert tuple(BACKENDS) == REMOTE_SCHEMES
    for url, kind, key in [("/tmp/x/y", LocalFiles, "/tmp/x/y"), ("s3://b//k/y", S3Store, "k/y"),
                           ("gs://b/k/y", GCSStore, "k/y")]:
        store, found = store_for(url)
        assert isinstance(store, kind) and found == key
    with pytest.raises(UserError, match="s3:///k: expected s3://bucket/key"):
        object_store("s3:///k")


def test_outputs_use_the_default_network_and_botocore_does_not_retry_on_its_own():
    store = object_store("s3://b/k")
    config = store.client.meta.config
    assert store.network == Network() and (config.connect_timeout, config.read_timeout) == (10.0, 60.0)
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert store.transfer.num_download_attempts == 1


def test_local_backend(tmp_path):
    root = str(tmp_path / "out")
    assert read_bytes(join(root, "a.json")) is None and list_files(root) == []
    write_bytes_atomic(join(root, "sub", "a.json"), b"1")
    write_bytes_atomic(join(root, "sub", "a.json"), b"2")
    assert read_bytes(join(root, "sub", "a.json")) == b"2" and exists(join(root, "sub", "a.json"))
    assert [p.name for p in (tmp_path / "out" / "sub").iterdir()] == ["a.json"]  # no temporary file left
    (tmp_path / "f.bin").write_bytes(b"x" * 10)
    upload_file(str(tmp_path / "f.bin"), join(root, "f.bin"))
    download_file(join(root, "f.bin"), str(tmp_path / "back" / "f.bin"))
    assert (tmp_path / "back" / "f.bin").read_bytes() == b"x" * 10
    assert list_files(root) == ["f.bin", "sub/a.json"]
    remove_file(join(root, "f.bin"))
    remove_file(join(root, "f.bin"))
    remove_tree(join(root, "sub"))
    remove_tree(join(root, "sub"))
    assert list_files(root) == []


@pytest.mark.s3
def test_remove_tree_never_empties_a_bucket(s3_server):
    write_bytes_atomic("s3://cpt/keep/a.json", b"{}")
    remove_tree("s3://cpt")
    remove_tree("s3://cpt/")
    assert read_bytes("s3://cpt/keep/a.json") == b"{}" and read_bytes("s3://cpt//keep/a.json") == b"{}"
    remove_tree("s3://cpt/keep")
    assert list_files("s3://cpt/keep") == []


# --- the bounds of every remote call -------------------------------------------------------------------------


@contextmanager
def silent_server():
    """Accepts connections and never sends a byte; yields (endpoint, connections accepted so far)."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", held
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


@contextmanager
def unavailable_server():
    """Answers every request with 503 (what S3 and GCS send when overloaded); yields (endpoint, requests seen)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(f"{self.command} {self.path}")
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@contextmanager
def refusing_server():
    """A port nothing listens on; yields (endpoint, an empty list: no attempt gets as far as a request)."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield f"http://127.0.0.1:{port}", []


SERVERS = {"stall": (silent_server, "read timeout"), "503": (unavailable_server, "HTTP 503"),
           "refused": (refusing_server, "c")}  # refused: "connection refused" (GCS) or "cannot connect" (S3)


@pytest.fixture
def point(monkeypatch):
    """Point a scheme's client at an endpoint; retries wait milliseconds."""
    from cpt_tasks.storage import network

    monkeypatch.setattr(network, "BACKOFF_BASE", 0.01)

    def to(scheme: str, endpoint: str) -> None:
        if scheme == "s3":
            for key, value in {"S3_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
                monkeypatch.setenv(key, value)
        else:
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)

    return to


@pytest.mark.parametrize("scheme", REMOTE_SCHEMES)
@pytest.mark.parametrize("kind", list(SERVERS))
@pytest.mark.parametrize("call,verb", [
    (lambda url: write_bytes_atomic(f"{url}/x/manifest.json", b"{}", QUICK), "PUT"),
    (lambda url: read_bytes(f"{url}/x/manifest.json", QUICK), "GET"),
    (lambda url: resolve_objects(f"{url}/x/", None, "train", QUICK), "LIST"),
], ids=["write", "read", "list"])
def test_every_call_is_bounded_and_fails_as_transient(point, scheme, kind, call, verb):
    serve, reason = SERVERS[kind]
    with serve() as (endpoint, attempts):
        point(scheme, endpoint)
        started = time.monotonic()
        with pytest.raises(TransientError) as caught:
            call(f"{scheme}://cpt")
        took = time.monotonic() - started
        host = urlparse(endpoint).netloc
        assert re.fullmatch(rf"{re.escape(host)}: {verb} {scheme}://cpt/x/(manifest\.json)?: {reason}.* \(2 attempts\)",
                            str(caught.value)), str(caught.value)
        assert kind == "refused" or len(attempts) == QUICK.max_retries + 1
        # botocore sends a PUT's body after "100 Continue", or after waiting 1 s for it: 1 s more per attempt
        expect_continue = (QUICK.max_retries + 1) * 1.0 if (scheme, verb) == ("s3", "PUT") else 0.0
        # + 3 s: a client's first call in a process loads botocore's or google's models (its paginators too), up
        # to ~2 s on two busy cores (CI measured 3.48 s against the bound of 1.61 s); an unbounded stall would
        # wait out the libraries' own 60 s read timeout, far beyond
        assert took < QUICK.worst_case_seconds() + expect_continue + 3.0


def test_the_default_bound_is_what_docs_faults_md_states():
    assert Network().worst_case_seconds() == 6 * 70 + 31
    assert "6 × 70 + 31 = **451 s (7.5 min)**" in (ROOT / "docs" / "faults.md").read_text()


# --- no scheme branches outside the layer --------------------------------------------------------------------

SCHEME_TEST = re.compile(r"""(==|!=|\bin)\s*\(?\s*["'](s3|gs)["']|["'](s3|gs)["']\s*(==|!=)|startswith\(\(?["'](s3|gs)://""")


def test_no_scheme_branches_outside_the_storage_layer():
    found = []
    for package in ("cpt_tasks", "cpt_pipeline", "cpt_local", "dags"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel.startswith("cpt_tasks/storage/"):
                continue
            found += [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
                      if SCHEME_TEST.search(line)]
    assert found == []
    assert SCHEME_TEST.search('if url.startswith(("s3://", "gs://")):') and SCHEME_TEST.search('scheme == "gs"')
