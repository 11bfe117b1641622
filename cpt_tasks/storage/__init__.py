"""The one object-storage layer: file operations over local paths, ``s3://`` and ``gs://`` URLs, for the
pipeline's outputs (manifests, indexes, reports, pointers, shard uploads, cleanup) and its inputs (listing,
checksums and verified, resumable reads of a dataset's objects, through ``cpt_tasks.data.objstore``).

- ``urls``: the one URL parser (:func:`parse_url`; leading slashes of a key are dropped, as streaming and
  Composer do) and :func:`join`.
- ``backends``: what every backend offers; ``local`` (paths), ``s3`` and ``gs`` (one class each, and the one
  place each builds its client: S3 honours ``S3_ENDPOINT_URL`` and boto3's credential chain, GCS
  ``STORAGE_EMULATOR_HOST`` and application default credentials).
- ``network``: the :class:`Network` (connect/read timeouts, bounded retries with backoff) every remote call runs
  under; the functions here use ``Network()`` unless given one. A failure that outlives its retries is
  :class:`~cpt_tasks.errors.TransientError` (exit 1) naming the endpoint and the object.
- ``resuming``: :class:`ResumingStream`, an object read that resumes a cut transfer by byte range.

MDS shards themselves are written by ``streaming.MDSWriter`` (locally, then uploaded with :func:`upload_file`).
Nothing outside this package branches on a URL's scheme: :func:`store_for` picks the backend.
"""

from __future__ import annotations

from pathlib import Path

from cpt_tasks.errors import UserError
from cpt_tasks.storage.backends import BucketUnavailable, ObjectChanged, ObjectInfo, ObjectStore, Store
from cpt_tasks.storage.gcs import GCSStore
from cpt_tasks.storage.local import LocalFiles
from cpt_tasks.storage.network import Network
from cpt_tasks.storage.resuming import ResumingStream
from cpt_tasks.storage.s3 import S3Store
from cpt_tasks.storage.urls import REMOTE_SCHEMES, ObjectURL, folder_prefix, is_remote, join, parse_url

BACKENDS: dict[str, type[ObjectStore]] = {"s3": S3Store, "gs": GCSStore}  # one per REMOTE_SCHEMES

__all__ = ["BACKENDS", "REMOTE_SCHEMES", "BucketUnavailable", "GCSStore", "LocalFiles", "Network", "ObjectChanged",
           "ObjectInfo", "ObjectStore", "ObjectURL", "ResumingStream", "S3Store", "Store", "download_file", "exists",
           "folder_prefix", "is_remote", "join", "list_files", "object_store", "parse_url", "read_bytes",
           "remove_file", "remove_tree", "store_for", "upload_file", "write_bytes_atomic"]


def object_store(url: str | ObjectURL, network: Network | None = None) -> ObjectStore:
    """The backend for the bucket of an ``s3://``/``gs://`` URL; UserError when the URL names no bucket."""
    parsed = parse_url(url) if isinstance(url, str) else url
    if not parsed.bucket:
        raise UserError(f"{url}: expected {parsed.scheme or 's3'}://bucket/key")
    return BACKENDS[parsed.scheme](parsed.bucket, network or Network())


def store_for(url: str, network: Network | None = None) -> tuple[Store, str]:
    """(backend, key) for a location: the local filesystem for a path, else its bucket's object store."""
    parsed = parse_url(url)
    return (object_store(parsed, network) if parsed.remote else LocalFiles()), parsed.key


def read_bytes(url: str, network: Network | None = None) -> bytes | None:
    """The object's bytes, or None if it does not exist."""
    store, key = store_for(url, network)
    return store.read(key)


def exists(url: str, network: Network | None = None) -> bool:
    """True when the file/object exists (without reading it)."""
    store, key = store_for(url, network)
    return store.exists(key)


def write_bytes_atomic(url: str, data: bytes, network: Network | None = None) -> None:
    """Write an object so that readers see either nothing or the whole content."""
    store, key = store_for(url, network)
    store.write(key, data)


def list_files(url: str, network: Network | None = None) -> list[str]:
    """Relative paths of every file/object under a folder or prefix, sorted."""
    store, key = store_for(url, network)
    return store.list_names(key)


def remove_tree(url: str, network: Network | None = None) -> None:
    """Delete a folder or prefix and everything under it; a missing one is fine."""
    store, key = store_for(url, network)
    store.remove_tree(key)


def remove_file(url: str, network: Network | None = None) -> None:
    """Delete one file/object; a missing one is fine."""
    store, key = store_for(url, network)
    store.remove(key)


def upload_file(local_path: str, url: str, network: Network | None = None) -> None:
    """Copy a local file to a URL (or a local path)."""
    store, key = store_for(url, network)
    store.upload(local_path, key)


def download_file(url: str, local_path: str, network: Network | None = None) -> None:
    """Copy a file/object from a URL (or a local path) to a local file, streamed (not held in memory)."""
    store, key = store_for(url, network)
    Path(local_path).parent.mkdir(parents=True, exist_ok=True)
    store.download(key, local_path)
