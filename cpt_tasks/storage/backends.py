"""What every backend of the storage layer offers: :class:`Store` (the operations the pipeline's outputs need, on
the local filesystem or a bucket) and :class:`ObjectStore`, its base for a bucket (S3 in ``s3.py``, GCS in
``gcs.py``), which adds what dataset inputs need (listing with sizes and digests, pinned ranged reads) and runs
every call through :func:`~cpt_tasks.storage.network.call_with_retries` with the store's :class:`Network`.

A backend is built for one bucket (or the local filesystem) and takes keys; ``cpt_tasks.storage`` picks the
backend for a URL. Backends translate their library's errors into the few this layer raises: a missing object is
``None``/``False``/ignored where the operation says so, a transient failure that outlived its retries is
:class:`~cpt_tasks.errors.TransientError`, :class:`BucketUnavailable` (no such bucket, access denied) and
:class:`ObjectChanged` (a pinned read of a version that is gone); anything else propagates as the library raised it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from cpt_tasks.storage.network import Network, call_with_retries
from cpt_tasks.storage.urls import folder_prefix

T = TypeVar("T")


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: ``key``, ``size``, ``etag`` (S3: its ETag without quotes; GCS: the MD5 in hex, or
    ``generation-<n>`` when the store keeps none, as for composite objects), ``pin`` (what a read is pinned to: the
    S3 ETag, the GCS generation) and ``sha256_kept`` (S3: the object carries a full-object SHA-256 checksum,
    which :meth:`ObjectStore.sha256` asks for)."""

    key: str
    size: int
    etag: str
    pin: str | int
    sha256_kept: bool = False


class BucketUnavailable(Exception):
    """The bucket does not exist or may not be listed (no such bucket, access denied); the message says which."""


class ObjectChanged(Exception):
    """A read pinned to a version found that version gone (the object was replaced or deleted); the message is
    the store's reason (S3's error code, GCS's response)."""


class Store:
    """The operations on one place objects live; keys are object names (locally: paths)."""

    scheme = ""

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None if it does not exist."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        """True when the object exists (without reading it)."""
        raise NotImplementedError

    def write(self, key: str, data: bytes) -> None:
        """Write an object so that readers see either nothing or the whole content."""
        raise NotImplementedError

    def list_names(self, key: str) -> list[str]:
        """Names, relative to the folder ``key``, of every object under it (recursive), sorted."""
        raise NotImplementedError

    def remove(self, key: str) -> None:
        """Delete one object; a missing one is fine."""
        raise NotImplementedError

    def remove_tree(self, key: str) -> None:
        """Delete the folder ``key`` and everything under it; a missing one is fine (a bucket's root: nothing)."""
        raise NotImplementedError

    def upload(self, local_path: str, key: str) -> None:
        """Copy a local file to the object ``key``."""
        raise NotImplementedError

    def download(self, key: str, local_path: str) -> None:
        """Copy the object ``key`` to a local file, streamed (not held in memory)."""
        raise NotImplementedError


class ObjectStore(Store):
    """One bucket: the :class:`Store` operations plus listing, checksums and pinned ranged reads; every call
    bounded by ``network`` (timeouts per attempt, ``max_retries`` further attempts, then TransientError)."""

    def __init__(self, bucket: str, network: Network) -> None:
        self.bucket, self.network = bucket, network

    @property
    def host(self) -> str:
        """The server calls go to (``host:port``), for error messages."""
        raise NotImplementedError

    def url(self, key: str) -> str:
        return f"{self.scheme}://{self.bucket}/{key}"

    def call(self, what: str, key: str, request: Callable[[], T]) -> T:
        """``request()``, retried while :meth:`transient` says its failure may pass; ``what`` (a verb) and
        ``key`` name the call in the TransientError raised when the retries are spent."""
        return call_with_retries(request, self.network, self.host, f"{what} {self.url(key)}", self.transient)

    def transient(self, exc: BaseException) -> bool:
        """True for failures worth another attempt: connection errors, timeouts, cut transfers, 5xx, 429."""
        raise NotImplementedError

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (recursive), in the store's order; BucketUnavailable
        when the bucket cannot be listed."""
        raise NotImplementedError

    def sha256(self, key: str) -> str | None:
        """The object's full-object SHA-256 (hex) when the store keeps one, else None."""
        return None

    def describe_pin(self, pin: str | int) -> str:
        """How error messages name a pinned version (``ETag …``, ``generation …``)."""
        raise NotImplementedError

    def open(self, key: str, start: int, pin: str | int) -> BinaryIO:
        """A stream of the object from byte ``start``, only while its version is still ``pin`` (ObjectChanged
        otherwise). One attempt, no retry: :class:`~cpt_tasks.storage.resuming.ResumingStream` resumes."""
        raise NotImplementedError

    def remove_many(self, keys: list[str]) -> None:
        """Delete these objects (missing ones are fine)."""
        for key in keys:
            self.remove(key)

    def list_names(self, key: str) -> list[str]:
        prefix = folder_prefix(key)
        return sorted(info.key[len(prefix):] for info in self.list(prefix))

    def remove_tree(self, key: str) -> None:
        prefix = folder_prefix(key)
        if prefix:  # never the whole bucket
            self.remove_many([info.key for info in self.list(prefix)])
