"""A fault-injecting HTTP proxy for the object-storage tests: it forwards every request to the real
S3-compatible server (moto) and, for GETs of matching keys, cuts the response mid-body (headers promise the whole
length) or flips one byte. Listens on 127.0.0.1 only; a daemon thread, stopped by ``close()``."""

from __future__ import annotations

import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


class FaultyProxy:
    """``mode``: None (pass through), "cut" (the next ``cuts`` GETs of a key containing ``match`` stop halfway),
    "flip" (every such GET has one byte changed)."""

    def __init__(self, upstream: str) -> None:
        target = urlparse(upstream)
        self.host, self.port = target.hostname, target.port
        self.mode: str | None = None
        self.match = ""
        self.cuts = 0
        self.gets: list[tuple[str, str | None]] = []  # (path, Range header) of every GET seen
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _fault(self, method: str, path: str, rng: str | None) -> str | None:
        with self.lock:
            if method != "GET" or not self.match or self.match not in path:
                return None
            self.gets.append((path, rng))
            if self.mode == "cut" and self.cuts > 0:
                self.cuts -= 1
                return "cut"
            return "flip" if self.mode == "flip" else None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=30)
                conn.request(self.command, self.path, body, headers=dict(self.headers.items()))
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                fault = proxy._fault(self.command, self.path, self.headers.get("Range")) \
                    if resp.status in (200, 206) else None
                if fault == "flip" and data:
                    data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x01]) + data[len(data) // 2 + 1:]
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if fault == "cut":
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        return Handler
