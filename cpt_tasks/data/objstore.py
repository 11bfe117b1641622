"""Object-storage inputs: ``--dataset s3://bucket/prefix/`` (or ``gs://``) listed, fingerprinted and streamed.

Listing: every JSON-lines and parquet object under the prefix (recursive, sorted by key); with
``--data_subset X`` those under ``<prefix>/data/X/`` or else ``<prefix>/X/``, like a local folder. Each object
is recorded by key (relative to that root), size and digest, never by bucket: the fingerprint is content-
addressed, as for a local folder. The digest is the object's full-object SHA-256 checksum when the store keeps
one, else its ETag when that is a plain MD5 (no ``-``: not multipart), else the ETag alone is recorded and only
the size is checked (``algorithm`` None); the manifest records which.

Reading: objects are streamed (no local copy; parquet excepted, see ``parquet.py``) through
:class:`~cpt_tasks.data.verified.VerifyingReader`, so a file read to its end that does not match its listing
raises BadDataError (exit 3). Every call uses ``--connect_timeout``/``--read_timeout``/``--max_retries`` (botocore
``Config``; the GCS client's timeout and retry), and pins the listed version (S3 ``If-Match`` on the ETag, GCS
``if_generation_match``): an object changed since it was listed is bad data, not a splice of two versions. A
stream cut mid-object is resumed by a ranged GET from the byte reached, at most ``max_retries`` times in a row
without progress; then the conversion fails as transient (exit 1). S3 honours ``S3_ENDPOINT_URL`` and boto3's
default credential chain, exactly as the outputs do (``cpt_tasks.storage``).
"""

from __future__ import annotations

import base64
import os
import sys
import time
from collections.abc import Callable
from functools import partial

from cpt_tasks.data.network import Network
from cpt_tasks.data.sources import SUFFIXES, NoFilesError, Source, SourceFile
from cpt_tasks.data.verified import VerifyingReader
from cpt_tasks.errors import BadDataError, UserError

BLOCK = 1 << 22


def split_url(url: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of an ``s3://`` or ``gs://`` URL."""
    scheme, _, rest = url.partition("://")
    bucket, _, key = rest.partition("/")
    return scheme.lower(), bucket, key


def resolve_objects(url: str, subset: str | None, split: str, network: Network) -> Source:
    """List ``url``'s JSON-lines and parquet objects (see the module doc); UserError naming the URL if none."""
    scheme, bucket, key = split_url(url)
    if not bucket:
        raise UserError(f"--dataset {url}: expected {scheme}://bucket/prefix")
    if split != "train":
        raise UserError(f"--splits {split}: an object-storage dataset has one split; use --splits train")
    store = _S3(bucket, network) if scheme == "s3" else _GCS(bucket, network)
    if key and not key.endswith("/") and key.endswith(SUFFIXES) and not subset:
        roots = [key.rpartition("/")[0] + "/" if "/" in key else ""]
        listed = [o for o in store.list(key) if o[0] == key]  # one object named by its key
    else:
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        roots = [f"{prefix}data/{subset}/", f"{prefix}{subset}/"] if subset else [prefix]
        listed = []
        for root in roots:
            listed = [o for o in store.list(root) if o[0].endswith(SUFFIXES)]
            if listed:
                roots = [root]
                break
    if not listed:
        where = " or ".join(f"{scheme}://{bucket}/{r}" for r in roots)
        raise NoFilesError(f"--dataset {url}{f' --data_subset {subset}' if subset else ''}: no "
                           f"{', '.join(SUFFIXES)} objects at {where}")
    root = roots[0]
    files = []
    for name, size, etag, checksum in sorted(listed):
        digest, algorithm = (checksum, "sha256") if checksum else (etag, "md5") if _plain_md5(etag) else (etag, None)
        object_url = f"{scheme}://{bucket}/{name}"
        files.append(SourceFile(url=object_url, rel=name[len(root):], size=size, sha256=digest, algorithm=algorithm,
                                opener=partial(_open_verified, store, name, size, etag, digest, algorithm,
                                               object_url)))
    return Source(kind=scheme, dataset=url, subset=subset, split=split, revision=None, files=files)


def _plain_md5(etag: str) -> bool:
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())


def _open_verified(store, key: str, size: int, etag: str, digest: str, algorithm: str | None, name: str):
    stream = ResumingStream(partial(store.fetch, key, etag, name), size, name, store.network.max_retries)
    return VerifyingReader(stream, name, size, digest, algorithm)


class ResumingStream:
    """A byte stream of one object that reopens itself with a ranged request from the byte reached when a read
    fails or ends early; ``fetch(start)`` opens the object from byte ``start``."""

    def __init__(self, fetch: Callable[[int], object], size: int, name: str, max_retries: int) -> None:
        self.fetch, self.size, self.name, self.max_retries = fetch, size, name, max_retries
        self.body = None
        self.pos = 0
        self.failures = 0  # in a row, without a byte of progress
        self.resumes = 0

    def read(self, n: int = -1) -> bytes:
        while True:
            if self.pos >= self.size:
                return b""
            try:
                if self.body is None:
                    self.body = self.fetch(self.pos)
                data = self.body.read(n if n and n > 0 else None)
            except (BadDataError, UserError):
                raise
            except Exception as exc:  # noqa: BLE001 - which errors are transient is decided in _retry
                self._retry(exc)
                continue
            if not data:  # the connection ended before the object did
                self._retry(EOFError(f"stream ended at byte {self.pos:,} of {self.size:,}"))
                continue
            self.pos += len(data)
            self.failures = 0
            return data

    def _retry(self, exc: Exception) -> None:
        if not _transient(exc):
            raise exc
        self.close()
        self.failures += 1
        if self.failures > self.max_retries:
            raise ConnectionError(f"{self.name}: reading failed at byte {self.pos:,} of {self.size:,}, "
                                  f"{self.max_retries} retries exhausted: {exc}") from exc
        self.resumes += 1
        print(f"{self.name}: read cut at byte {self.pos:,} ({type(exc).__name__}: {exc}); resuming from there "
              f"(retry {self.failures}/{self.max_retries})", file=sys.stderr, flush=True)
        time.sleep(min(0.2 * 2 ** (self.failures - 1), 10.0))

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self.body is not None:
            try:
                self.body.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
                pass
            self.body = None


def _transient(exc: Exception) -> bool:
    """Network failures worth a resume: botocore/urllib3/requests/socket errors, timeouts, early ends."""
    from botocore.exceptions import BotoCoreError
    from urllib3.exceptions import HTTPError

    transient: tuple[type[BaseException], ...] = (BotoCoreError, HTTPError, OSError, EOFError)
    try:
        from requests.exceptions import RequestException

        transient += (RequestException,)
    except ImportError:
        pass
    return isinstance(exc, transient)


class _S3:
    """Listing and ranged, version-pinned reads on S3 (or an S3-compatible endpoint)."""

    def __init__(self, bucket: str, network: Network) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.network = bucket, network
        config = Config(connect_timeout=network.connect_timeout, read_timeout=network.read_timeout,
                        retries={"max_attempts": network.max_retries, "mode": "standard"})
        self.client = boto3.session.Session().client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
                                                     config=config)

    def list(self, prefix: str) -> list[tuple[str, int, str, str | None]]:
        """(key, size, ETag, full-object sha256 hex or None) of every object under ``prefix``."""
        from botocore.exceptions import ClientError

        out = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    checksum = None
                    if "SHA256" in obj.get("ChecksumAlgorithm", []) and obj["Key"].endswith(SUFFIXES):
                        checksum = self._sha256(obj["Key"])
                    out.append((obj["Key"], obj["Size"], obj["ETag"].strip('"'), checksum))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchBucket", "AccessDenied", "InvalidBucketName", "AllAccessDisabled"):
                raise UserError(f"--dataset s3://{self.bucket}/{prefix}: {code}: {exc}") from exc
            raise
        return out

    def _sha256(self, key: str) -> str | None:
        head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        value = head.get("ChecksumSHA256")
        if not value or "-" in value or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
            return None  # a multipart object's composite checksum is no hash of its bytes
        return base64.b64decode(value).hex()

    def fetch(self, key: str, etag: str, name: str, start: int):
        from botocore.exceptions import ClientError

        extra = {"Range": f"bytes={start}-"} if start else {}
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{etag}"', **extra)["Body"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise BadDataError(f"{name}: changed or deleted since it was listed (ETag {etag}): {code}") from exc
            raise


class _GCS:
    """Listing and ranged, generation-pinned reads on Google Cloud Storage."""

    def __init__(self, bucket: str, network: Network) -> None:
        from google.api_core.retry import Retry
        from google.cloud import storage as gcs

        self.network = network
        self.timeout = (network.connect_timeout, network.read_timeout)
        self.retry = Retry(initial=0.2, maximum=10.0, timeout=network.read_timeout * (network.max_retries + 1))
        self.bucket = gcs.Client().bucket(bucket)
        self.generations: dict[str, int] = {}

    def list(self, prefix: str) -> list[tuple[str, int, str, str | None]]:
        from google.api_core.exceptions import Forbidden, NotFound

        out = []
        try:
            for blob in self.bucket.list_blobs(prefix=prefix, timeout=self.timeout, retry=self.retry):
                self.generations[blob.name] = blob.generation
                md5 = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else f"generation-{blob.generation}"
                out.append((blob.name, blob.size, md5, None))  # GCS keeps MD5 (not for composite objects)
        except (NotFound, Forbidden) as exc:
            raise UserError(f"--dataset gs://{self.bucket.name}/{prefix}: {exc}") from exc
        return out

    def fetch(self, key: str, etag: str, name: str, start: int):
        return _GcsRanges(self, key, name, start)


class _GcsRanges:
    """A GCS object read as consecutive ranged downloads of ``BLOCK`` bytes (each a request with timeouts)."""

    def __init__(self, store: _GCS, key: str, name: str, start: int) -> None:
        self.store, self.key, self.name, self.pos = store, key, name, start

    def read(self, n: int | None = None) -> bytes:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self.store.bucket.blob(self.key)
        try:
            data = blob.download_as_bytes(start=self.pos, end=self.pos + max(n or BLOCK, 1) - 1, checksum=None,
                                          if_generation_match=self.store.generations.get(self.key),
                                          timeout=self.store.timeout, retry=self.store.retry)
        except (PreconditionFailed, NotFound) as exc:
            raise BadDataError(f"{self.name}: changed or deleted since it was listed: {exc}") from exc
        self.pos += len(data)
        return data

    def close(self) -> None:
        pass
