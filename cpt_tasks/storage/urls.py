"""The one parser of storage locations: ``s3://bucket/key``, ``gs://bucket/key`` or a local path.

A location is an :class:`ObjectURL` (scheme, bucket, key); a local path has scheme and bucket ``""`` and the path
as its key. No URL parsing beyond that: ``#`` and ``?`` are ordinary characters of a key, the scheme is matched
case-insensitively, the bucket and key are kept as written.

**Leading slashes of the key are dropped** (``s3://b//x`` is the key ``x``), deliberately: mosaicml-streaming's
uploaders and Composer's object stores take the key as ``urlparse(url).path.lstrip('/')``, and MDS shards and
checkpoints are written by them while this layer writes the manifests, indexes and pointers beside them; so both
must agree on where ``<out_root>/…`` is. The price: a key that itself begins with ``/`` cannot be named.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

REMOTE_SCHEMES = ("s3", "gs")


class ObjectURL(NamedTuple):
    """A parsed location: ``scheme`` ("s3", "gs", or "" for a local path), ``bucket`` ("" locally) and ``key``
    (the object's name in its bucket, without leading slashes; locally the path)."""

    scheme: str
    bucket: str
    key: str

    @property
    def remote(self) -> bool:
        return bool(self.scheme)

    def with_key(self, key: str) -> str:
        """The URL of another object of the same bucket (a path, locally)."""
        return f"{self.scheme}://{self.bucket}/{key}" if self.scheme else key

    def __str__(self) -> str:
        return self.with_key(self.key)


def is_remote(url: str) -> bool:
    """True for object-storage URLs (s3://, gs://), False for local paths."""
    return url.split("://", 1)[0].lower() in REMOTE_SCHEMES if "://" in url else False


def parse_url(url: str) -> ObjectURL:
    """(scheme, bucket, key) of a location; see the module doc for what is kept and what is dropped."""
    if not is_remote(url):
        return ObjectURL("", "", url)
    scheme, rest = url.split("://", 1)
    bucket, _, key = rest.partition("/")
    return ObjectURL(scheme.lower(), bucket, key.lstrip("/"))


def folder_prefix(key: str) -> str:
    """The listing prefix of the folder ``key`` names: ``key/`` (``""``: the whole bucket)."""
    return key.rstrip("/") + "/" if key.strip("/") else ""


def join(root: str, *parts: str) -> str:
    """Join path segments onto a local path or URL with '/'."""
    if is_remote(root):
        return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(root, *parts))
