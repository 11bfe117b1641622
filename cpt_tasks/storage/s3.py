"""S3 (or any S3-compatible endpoint) as a backend of the storage layer.

The client is built in one place, :func:`s3_client`: boto3's default credential chain, ``S3_ENDPOINT_URL`` when
set (exactly as mosaicml-streaming and Composer read it, so one endpoint such as MinIO, moto or R2 serves the
whole pipeline), the :class:`Network`'s connect/read timeouts, and botocore's own retries off: every call is
retried by :meth:`ObjectStore.call` instead (``max_retries`` further attempts with the pipeline's backoff, then
TransientError naming the endpoint and the object), so inputs and outputs share one policy and one worst case.
Throttling (``SlowDown``, 503) and 5xx are transient; 4xx are not.
"""

from __future__ import annotations

import base64
import os
import threading
from urllib.parse import urlparse

from cpt_tasks.storage.backends import BucketUnavailable, ObjectChanged, ObjectInfo, ObjectStore
from cpt_tasks.storage.network import RETRY_STATUSES, Network

RETRY_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeoutException",
                         "InternalError", "ServiceUnavailable", "PriorRequestNotComplete", "RequestLimitExceeded"})
DENIED_CODES = frozenset({"NoSuchBucket", "AccessDenied", "InvalidBucketName", "AllAccessDisabled"})
GONE_CODES = frozenset({"PreconditionFailed", "412", "NoSuchKey", "404"})
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
DELETE_BATCH = 1000  # objects per DeleteObjects request (S3's limit)


# The environment a client depends on: its endpoint, region and credentials. A client is built once per process
# for each of these and each Network (building one costs 0.1-0.2 s; boto3 clients are thread-safe); a forked
# worker builds its own (its parent's connections are not its to share).
CLIENT_ENVIRONMENT = ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                      "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONFIG_FILE",
                      "AWS_SHARED_CREDENTIALS_FILE")
_CLIENTS: dict[tuple, object] = {}
_LOCK = threading.Lock()


def s3_client(network: Network):
    """The boto3 S3 client every S3 call of the pipeline goes through (see the module doc), one per process for
    each environment (:data:`CLIENT_ENVIRONMENT`) and Network."""
    key = (os.getpid(), network, tuple(os.environ.get(name) for name in CLIENT_ENVIRONMENT))
    with _LOCK:
        if key not in _CLIENTS:
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=network.connect_timeout, read_timeout=network.read_timeout,
                            retries={"total_max_attempts": 1, "mode": "standard"})
            _CLIENTS[key] = boto3.session.Session().client(
                "s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None, config=config)
        return _CLIENTS[key]


def _code(exc) -> str | None:
    return exc.response.get("Error", {}).get("Code")


class S3Store(ObjectStore):
    """One S3 bucket: listing with ETags and SHA-256 checksums, ETag-pinned ranged reads, the output operations."""

    scheme = "s3"

    def __init__(self, bucket: str, network: Network) -> None:
        from boto3.s3.transfer import TransferConfig

        super().__init__(bucket, network)
        self.client = s3_client(network)
        self.transfer = TransferConfig(num_download_attempts=1)  # retried as a whole by call()

    @property
    def host(self) -> str:
        return urlparse(self.client.meta.endpoint_url).netloc

    def transient(self, exc: BaseException) -> bool:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from s3transfer.exceptions import RetriesExceededError
        from urllib3.exceptions import HTTPError

        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return status in RETRY_STATUSES or _code(exc) in RETRY_CODES
        if isinstance(exc, S3UploadFailedError):  # boto3 wraps the part's ClientError
            cause = exc.__cause__ or exc.__context__
            return cause is not None and self.transient(cause)
        return isinstance(exc, (HTTPClientError, BotoConnectionError, IncompleteReadError, RetriesExceededError,
                                HTTPError, ConnectionError, TimeoutError, EOFError))

    def read(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        def get() -> bytes | None:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if _code(exc) in MISSING_CODES:
                    return None
                raise

        return self.call("GET", key, get)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in MISSING_CODES:
                    return False
                raise
            return True

        return self.call("HEAD", key, head)

    def write(self, key: str, data: bytes) -> None:
        self.call("PUT", key, lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data))

    def remove(self, key: str) -> None:
        self.call("DELETE", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    def remove_many(self, keys: list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start:start + DELETE_BATCH]]
            self.call("DELETE", batch[0]["Key"], lambda batch=batch: self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}))

    def upload(self, local_path: str, key: str) -> None:
        self.call("PUT", key, lambda: self.client.upload_file(local_path, self.bucket, key, Config=self.transfer))

    def download(self, key: str, local_path: str) -> None:
        self.call("GET", key, lambda: self.client.download_file(self.bucket, key, local_path, Config=self.transfer))

    def list(self, prefix: str) -> list[ObjectInfo]:
        from botocore.exceptions import ClientError

        def pages() -> list[ObjectInfo]:
            out = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    etag = obj["ETag"].strip('"')
                    out.append(ObjectInfo(obj["Key"], obj["Size"], etag, etag,
                                          "SHA256" in obj.get("ChecksumAlgorithm", [])))
            return out

        try:
            return self.call("LIST", prefix, pages)
        except ClientError as exc:
            if _code(exc) in DENIED_CODES:
                raise BucketUnavailable(f"{_code(exc)}: {exc}") from exc
            raise

    def sha256(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            head = self.call("HEAD", key, lambda: self.client.head_object(Bucket=self.bucket, Key=key,
                                                                          ChecksumMode="ENABLED"))
        except ClientError as exc:
            if _code(exc) in DENIED_CODES:
                raise BucketUnavailable(f"{_code(exc)}: {exc}") from exc
            raise
        value = head.get("ChecksumSHA256")
        if not value or "-" in value or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
            return None  # a multipart object's composite checksum is no hash of its bytes
        return base64.b64decode(value).hex()

    def describe_pin(self, pin: str | int) -> str:
        return f"ETag {pin}"

    def open(self, key: str, start: int, pin: str | int):
        from botocore.exceptions import ClientError

        extra = {"Range": f"bytes={start}-"} if start else {}
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{pin}"', **extra)["Body"]
        except ClientError as exc:
            if _code(exc) in GONE_CODES:
                raise ObjectChanged(_code(exc)) from exc
            raise
