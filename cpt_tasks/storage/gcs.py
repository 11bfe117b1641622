"""Google Cloud Storage as a backend of the storage layer.

The client is built in one place, :func:`gcs_client`: google-cloud-storage's own defaults (application default
credentials, ``STORAGE_EMULATOR_HOST`` for an emulator, as the library reads it). Every call passes the
:class:`Network`'s ``(connect, read)`` timeouts and ``retry=None`` (the library's own deadline-based retry off):
:meth:`ObjectStore.call` retries instead, ``max_retries`` further attempts with the pipeline's backoff, then
TransientError naming the endpoint and the object, the same policy as S3's. Reads of an input are pinned to the
generation listed (``ifGenerationMatch``) and fetched as ranged downloads of at most :data:`BLOCK` bytes, each
its own request with the timeouts.
"""

from __future__ import annotations

import base64
import os
import threading
from urllib.parse import urlparse

from cpt_tasks.storage.backends import BucketUnavailable, ObjectChanged, ObjectInfo, ObjectStore
from cpt_tasks.storage.network import RETRY_STATUSES, Network

BLOCK = 1 << 22  # bytes per ranged request of a pinned read
DEFAULT_HOST = "storage.googleapis.com"


_CLIENTS: dict[tuple, object] = {}
_LOCK = threading.Lock()


def gcs_client():
    """The google-cloud-storage client every GCS call of the pipeline goes through (see the module doc), one per
    process for each emulator host and credentials file (the client is built once: it costs a credential lookup;
    a forked worker builds its own, its parent's connections are not its to share)."""
    key = (os.getpid(), *(os.environ.get(name) for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS",
                                                           "GOOGLE_CLOUD_PROJECT")))
    with _LOCK:
        if key not in _CLIENTS:
            from google.cloud import storage

            _CLIENTS[key] = storage.Client()
        return _CLIENTS[key]


class GCSStore(ObjectStore):
    """One GCS bucket: listing with MD5s and generations, generation-pinned ranged reads, the output operations."""

    scheme = "gs"

    def __init__(self, bucket: str, network: Network) -> None:
        super().__init__(bucket, network)
        self.client = gcs_client()
        self.bucket_ref = self.client.bucket(bucket)
        self.options = {"timeout": network.timeouts, "retry": None}

    @property
    def host(self) -> str:
        connection = getattr(self.client, "_connection", None)
        return urlparse(getattr(connection, "API_BASE_URL", "")).netloc or DEFAULT_HOST

    def transient(self, exc: BaseException) -> bool:
        import requests
        from google.api_core.exceptions import GoogleAPICallError
        from google.auth.exceptions import TransportError
        from urllib3.exceptions import HTTPError

        if isinstance(exc, GoogleAPICallError):
            return exc.code in RETRY_STATUSES
        return isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                                TransportError, HTTPError, ConnectionError, TimeoutError, EOFError))

    def read(self, key: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        def get() -> bytes | None:
            try:
                return self.bucket_ref.blob(key).download_as_bytes(**self.options)
            except NotFound:
                return None

        return self.call("GET", key, get)

    def exists(self, key: str) -> bool:
        return self.call("HEAD", key, lambda: self.bucket_ref.blob(key).exists(**self.options))

    def write(self, key: str, data: bytes) -> None:
        self.call("PUT", key, lambda: self.bucket_ref.blob(key).upload_from_string(data, **self.options))

    def remove(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        def delete() -> None:
            try:
                self.bucket_ref.blob(key).delete(**self.options)
            except NotFound:
                pass

        self.call("DELETE", key, delete)

    def upload(self, local_path: str, key: str) -> None:
        self.call("PUT", key, lambda: self.bucket_ref.blob(key).upload_from_filename(local_path, **self.options))

    def download(self, key: str, local_path: str) -> None:
        self.call("GET", key, lambda: self.bucket_ref.blob(key).download_to_filename(local_path, **self.options))

    def list(self, prefix: str) -> list[ObjectInfo]:
        from google.api_core.exceptions import Forbidden, NotFound

        def pages() -> list[ObjectInfo]:
            out = []
            for blob in self.client.list_blobs(self.bucket, prefix=prefix, **self.options):
                # GCS keeps an MD5 of every object but a composite one: then the generation stands in
                etag = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else f"generation-{blob.generation}"
                out.append(ObjectInfo(blob.name, blob.size, etag, blob.generation))
            return out

        try:
            return self.call("LIST", prefix, pages)
        except (NotFound, Forbidden) as exc:
            raise BucketUnavailable(str(exc)) from exc

    def describe_pin(self, pin: str | int) -> str:
        return f"generation {pin}"

    def open(self, key: str, start: int, pin: str | int):
        return _PinnedRanges(self, key, start, pin)


class _PinnedRanges:
    """A GCS object read as consecutive ranged downloads of at most ``BLOCK`` bytes from ``start``, each pinned
    to the generation ``pin`` (ObjectChanged when it is gone). A request cut short returns nothing, so a resume
    asks again from the start of its block."""

    def __init__(self, store: GCSStore, key: str, start: int, pin: str | int) -> None:
        self.store, self.key, self.pos, self.pin = store, key, start, pin

    def read(self, n: int | None = None) -> bytes:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self.store.bucket_ref.blob(self.key)
        size = min(n, BLOCK) if n and n > 0 else BLOCK  # a cut request costs at most one block
        try:
            data = blob.download_as_bytes(start=self.pos, end=self.pos + size - 1, checksum=None,
                                          if_generation_match=self.pin, **self.store.options)
        except (PreconditionFailed, NotFound) as exc:
            raise ObjectChanged(str(exc)) from exc
        self.pos += len(data)
        return data

    def close(self) -> None:
        pass
