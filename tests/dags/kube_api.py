"""A small Kubernetes API server for tests (the one piece of the pipeline that cannot run here): a threaded HTTP
server on 127.0.0.1 that answers the calls the pipeline's pod and Job operators make, through their own hook
and client, loaded from the kube config it writes (:meth:`KubeApi.kube_config`). Nothing in the provider is
patched; what the operators send is recorded as the API server received it (JSON, camelCase).

Endpoints (core/v1 and batch/v1, as a cluster serves them): create, list (by label selector) and delete Jobs;
read, list, patch and delete pods. The pods are the test's finished pods; a list returns one more of them per
call (the Job controller creating them one at a time), and a test's Job pods (those with a job-name label)
take the name of the Job created last. Every request is logged in ``KubeApi.log``.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from kubernetes.client import ApiClient

JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?$")
JOB_NAME = "batch.kubernetes.io/job-name"
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?$")


class KubeApi:
    """The server, its state (``jobs`` created, ``patched`` and ``deleted`` objects, ``lists`` of pods), and
    the kube config that points a client at it."""

    def __init__(self, pods: list) -> None:
        serialize = ApiClient().sanitize_for_serialization
        self.pods = {pod.metadata.name: serialize(pod) for pod in pods}
        self.jobs: list[dict] = []
        self.patched: list[tuple[str, dict]] = []
        self.deleted: list[tuple[str, str]] = []
        self.lists = 0
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        # stop() waits for the loop to notice: checked every 50 ms (the default half second, per test, added up)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address
        return f"http://{host}:{port}"

    def kube_config(self, folder: Path) -> str:
        """A kube config file for this server (JSON is YAML), as ``config_file`` for an operator."""
        path = folder / "kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "cpt"}}]}))
        return str(path)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        """The status and JSON body for one request."""
        with self._lock:
            self.log.append(f"{method} {path}")
            if match := JOBS.match(path):
                return self._jobs(method, match.group(1), match.group(2), body)
            if match := PODS.match(path):
                return self._pods(method, match.group(2), query, body)
        return 404, _status(404, f"no route {method} {path}")

    def _jobs(self, method: str, namespace: str, name: str | None, body: dict | None) -> tuple[int, dict]:
        if method == "POST" and name is None:
            self.jobs.append(body)
            for pod in self.pods.values():  # the Job controller's pods: labelled with the Job's name
                labels = pod["metadata"].get("labels") or {}
                if JOB_NAME in labels:
                    labels[JOB_NAME] = body["metadata"]["name"]
            return 201, body
        if method == "DELETE" and name is not None:
            self.deleted.append(("job", name))
            return 200, _status(200, "deleted")
        return 405, _status(405, f"{method} on jobs")

    def _pods(self, method: str, name: str | None, query: dict, body: dict | None) -> tuple[int, dict]:
        if name is None and method == "GET":
            self.lists += 1
            selector = query.get("labelSelector", [""])[0]
            matching = [p for p in self.pods.values() if _selects(selector, p["metadata"].get("labels") or {})]
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": matching[:self.lists]}
        if name not in self.pods:
            return 404, _status(404, f'pods "{name}" not found')
        if method == "PATCH":
            self.patched.append((name, body))
        elif method == "DELETE":
            self.deleted.append(("pod", name))
        return 200, self.pods[name]


def _selects(selector: str, labels: dict) -> bool:
    """Whether ``labels`` match an equality-based label selector (``a=b,c!=d,e``)."""
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _status(code: int, message: str) -> dict:
    return {"apiVersion": "v1", "kind": "Status", "code": code, "message": message,
            "status": "Success" if code < 300 else "Failure"}


def _handler(api: KubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            code, answer = api.answer(self.command, url.path, parse_qs(url.query), body)
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, *args) -> None:
            pass

    return Handler
