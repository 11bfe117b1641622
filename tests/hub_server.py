"""A small Hugging Face Hub for tests: a threaded HTTP server on 127.0.0.1 that speaks the part of the Hub's API
the real ``huggingface_hub`` client uses to list and read a dataset, with faults a test can inject.

Endpoints (as the real Hub): ``GET /api/datasets/<id>[/revision/<rev>]`` (dataset_info),
``GET /api/datasets/<id>/tree/<rev>[/<path>]?recursive=…`` (paged through ``Link: <…>; rel="next"``), and
``GET|HEAD /datasets/<id>/resolve/<rev>/<path>``: a non-LFS file is served there, an LFS file redirects (302) to
``/cdn/<sha256>`` on the same server, as the Hub redirects to its CDN. Both honour ``Range: bytes=N-``.

Faults (:class:`Faults`, consumed as requests match): HTTP statuses to answer first, bodies cut after some bytes,
stalls (the handler waits, sending nothing, until the server stops), files served with other bytes of the same
size, and files gone (404). Every request is logged in ``HubServer.log``. The server stops with the test.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

RANGE = re.compile(r"bytes=(\d+)-$")


@dataclass
class Faults:
    """What goes wrong, keyed by the kind of request ("info", "tree", "resolve", "cdn") or a substring of its
    path; each listed status or cut is used up as it fires."""

    statuses: dict[str, list[int]] = field(default_factory=dict)  # answer these statuses first
    cut_after: dict[str, list[int]] = field(default_factory=dict)  # send this many body bytes, then reset
    stall: set[str] = field(default_factory=set)  # send nothing until the server stops
    corrupt: set[str] = field(default_factory=set)  # file paths served with flipped bytes, same size
    corrupt_tail: set[str] = field(default_factory=set)  # file paths served with their last 64 bytes flipped
    missing: set[str] = field(default_factory=set)  # file paths answered with 404 (EntryNotFound)

    def take(self, table: dict[str, list[int]], path: str, kind: str = "") -> int | None:
        for key, values in table.items():
            if (key == kind or key in path) and values:
                return values.pop(0)
        return None


@dataclass
class HubRepo:
    """A dataset repository at one commit: file path -> content; ``plain`` paths are non-LFS (git blobs)."""

    dataset: str
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    plain: set[str] = field(default_factory=set)
    page_size: int = 3

    @classmethod
    def from_folder(cls, dataset: str, root: Path, subsets: list[str], **kwargs) -> HubRepo:
        files = {p.relative_to(root).as_posix(): p.read_bytes()
                 for s in subsets for p in sorted((root / "data" / s).rglob("*")) if p.is_file()}
        return cls(dataset, files, **kwargs)

    def entry(self, path: str) -> dict:
        data = self.files[path]
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        item = {"type": "file", "oid": blob, "size": len(data), "path": path}
        if path not in self.plain:
            item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return item

    def tree(self, folder: str) -> list[dict]:
        prefix = folder.rstrip("/") + "/" if folder else ""
        paths = sorted(p for p in self.files if p.startswith(prefix))
        folders = sorted({p[:i] for p in paths for i in [m.start() for m in re.finditer("/", p)]
                          if p[:i].startswith(prefix) and len(p[:i]) > len(prefix.rstrip("/"))})
        return [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in folders] + \
               [self.entry(p) for p in paths]


class HubServer:
    """The server: ``start()`` gives its URL (point ``HF_ENDPOINT`` there); ``stop()`` ends it and any stall."""

    def __init__(self, repo: HubRepo) -> None:
        self.repo, self.faults = repo, Faults()
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.served: dict[str, int] = {}  # body bytes sent per file path
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> HubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def requests(self, method: str, contains: str) -> list[tuple[str, str, str | None]]:
        return [r for r in self.log if r[0] == method and contains in r[1]]


def _handler(hub: HubServer):
    repo = hub.repo
    base = f"/api/datasets/{repo.dataset}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self.handle_request(body=False)

        def do_GET(self) -> None:
            self.handle_request(body=True)

        def handle_request(self, body: bool) -> None:
            url = urlparse(self.path)
            path = unquote(url.path)
            hub.log.append((self.command, path, self.headers.get("Range")))
            kind = ("info" if path == base or path.startswith(f"{base}/revision/") else
                    "tree" if path.startswith(f"{base}/tree/") else
                    "resolve" if path.startswith(f"/datasets/{repo.dataset}/resolve/") else
                    "cdn" if path.startswith("/cdn/") else "")
            if any(key == kind or key in path for key in hub.faults.stall):
                hub.stopping.wait(60)  # nothing is sent; the client's read timeout must end this
                self.close_connection = True
                return
            status = hub.faults.take(hub.faults.statuses, unquote(self.path), kind)
            if status is not None:
                return self.reply_json(status, {"error": f"injected {status}"})
            if path in (base, f"{base}/revision/main", f"{base}/revision/{repo.commit}"):
                siblings = [{"rfilename": p} for p in repo.files]
                return self.reply_json(200, {"id": repo.dataset, "sha": repo.commit, "private": False,
                                             "siblings": siblings})
            if path.startswith(f"{base}/revision/"):
                return self.reply_json(404, {"error": "Revision not found"}, code="RevisionNotFound")
            if path.startswith(f"{base}/tree/{repo.commit}"):
                return self.reply_tree(path[len(f"{base}/tree/{repo.commit}"):].lstrip("/"), url.query)
            resolve = f"/datasets/{repo.dataset}/resolve/{repo.commit}/"
            if path.startswith(resolve):
                name = path[len(resolve):]
                if name not in repo.files or name in hub.faults.missing:
                    return self.reply_json(404, {"error": "Entry not found"}, code="EntryNotFound")
                if name in repo.plain:
                    return self.reply_file(name, body)
                self.send_response(302)
                self.send_header("Location", f"/cdn/{repo.entry(name)['lfs']['oid']}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if path.startswith("/cdn/"):
                names = [n for n in repo.files if repo.entry(n).get("lfs", {}).get("oid") == path[5:]]
                if names:
                    return self.reply_file(names[0], body)
            return self.reply_json(404, {"error": "not found"}, code="RepoNotFound")

        def reply_json(self, status: int, payload, code: str | None = None, link: str | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if code:
                self.send_header("X-Error-Code", code)
            if link:
                self.send_header("Link", f'<{link}>; rel="next"')
            self.end_headers()
            self.wfile.write(data)

        def reply_tree(self, folder: str, query: str) -> None:
            items = repo.tree(folder)
            if not items:
                return self.reply_json(404, {"error": "Entry not found"}, code="EntryNotFound")
            params = parse_qs(query)
            start = int(params.get("cursor", ["0"])[0])
            page = items[start:start + repo.page_size]
            link = None
            if start + repo.page_size < len(items):
                quoted = self.path.split("?")[0]
                link = f"{hub.url}{quoted}?recursive=True&expand=False&cursor={start + repo.page_size}"
            return self.reply_json(200, page, link=link)

        def reply_file(self, name: str, body: bool) -> None:
            data = repo.files[name]
            if name in hub.faults.corrupt:
                data = bytes(b ^ 0x5A for b in data[:len(data) // 2]) + data[len(data) // 2:]
            if name in hub.faults.corrupt_tail:
                data = data[:-64] + bytes(b ^ 0xFF for b in data[-64:])
            start, status = 0, 200
            wanted = RANGE.match(self.headers.get("Range", ""))
            if wanted:
                start, status = int(wanted.group(1)), 206
                if start >= len(data):
                    return self.reply_json(416, {"error": "range not satisfiable"})
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{repo.entry(name).get("lfs", {}).get("oid", "")}"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return None
            cut = hub.faults.take(hub.faults.cut_after, name)
            payload = data[start:] if cut is None else data[start:start + cut]
            # counted before it is sent: a client that has read it all may exit, and its test look, before this
            # thread would run again after the write
            hub.served[name] = hub.served.get(name, 0) + len(payload)
            self.wfile.write(payload)
            if cut is not None:  # reset the connection mid-body
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
            return None

    return Handler


def dead_endpoint() -> str:
    """The URL of a port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
