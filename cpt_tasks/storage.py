"""Small file operations over local paths, ``s3://`` and ``gs://`` URLs (manifests, cleanup, listing).

MDS shards themselves are written by ``streaming.MDSWriter``; this module handles the few objects around
them. S3 honours ``S3_ENDPOINT_URL`` exactly like streaming and Composer do, so one S3-compatible
endpoint (MinIO, moto, R2, ...) serves the whole pipeline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

REMOTE_SCHEMES = ("s3", "gs")


def is_remote(url: str) -> bool:
    """True for object-storage URLs (s3://, gs://), False for local paths."""
    return url.split("://", 1)[0].lower() in REMOTE_SCHEMES if "://" in url else False


def join(root: str, *parts: str) -> str:
    """Join path segments onto a local path or URL with '/'."""
    if is_remote(root):
        return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(root, *parts))


def _split(url: str) -> tuple[str, str, str]:
    """(scheme, bucket, key); '#' and '?' are ordinary characters of a key (no URL parsing)."""
    if not is_remote(url):
        return "", "", url
    scheme, rest = url.split("://", 1)
    bucket, _, key = rest.partition("/")
    return scheme.lower(), bucket, key.lstrip("/")


def _s3_client():
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None)


def _gcs_bucket(name: str):
    from google.cloud import storage as gcs

    return gcs.Client().bucket(name)


def read_bytes(url: str) -> bytes | None:
    """The object's bytes, or None if it does not exist."""
    scheme, bucket, key = _split(url)
    if scheme == "s3":
        client = _s3_client()
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
    if scheme == "gs":
        blob = _gcs_bucket(bucket).blob(key)
        return blob.download_as_bytes() if blob.exists() else None
    path = Path(url)
    return path.read_bytes() if path.is_file() else None


def exists(url: str) -> bool:
    """True when the file/object exists (without reading it)."""
    scheme, bucket, key = _split(url)
    if scheme == "s3":
        client = _s3_client()
        try:
            client.head_object(Bucket=bucket, Key=key)
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True
    if scheme == "gs":
        return _gcs_bucket(bucket).blob(key).exists()
    return Path(url).is_file()


def write_bytes_atomic(url: str, data: bytes) -> None:
    """Write an object so that readers see either nothing or the whole content."""
    scheme, bucket, key = _split(url)
    if scheme == "s3":
        _s3_client().put_object(Bucket=bucket, Key=key, Body=data)
    elif scheme == "gs":
        _gcs_bucket(bucket).blob(key).upload_from_string(data)
    else:
        path = Path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def list_files(url: str) -> list[str]:
    """Relative paths of every file/object under a folder or prefix, sorted."""
    scheme, bucket, key = _split(url)
    prefix = key.rstrip("/") + "/" if key else ""
    if scheme == "s3":
        paginator = _s3_client().get_paginator("list_objects_v2")
        names = [
            obj["Key"][len(prefix):]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        ]
        return sorted(names)
    if scheme == "gs":
        return sorted(b.name[len(prefix):] for b in _gcs_bucket(bucket).list_blobs(prefix=prefix))
    root = Path(url)
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def remove_tree(url: str) -> None:
    """Delete a folder or prefix and everything under it; a missing one is fine."""
    scheme, bucket, key = _split(url)
    if scheme == "s3":
        client = _s3_client()
        names = list_files(url)
        prefix = key.rstrip("/") + "/"
        for start in range(0, len(names), 1000):
            batch = [{"Key": prefix + n} for n in names[start:start + 1000]]
            client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    elif scheme == "gs":
        for blob in _gcs_bucket(bucket).list_blobs(prefix=key.rstrip("/") + "/"):
            blob.delete()
    else:
        shutil.rmtree(url, ignore_errors=True)


def remove_file(url: str) -> None:
    """Delete one file/object; a missing one is fine."""
    scheme, bucket, key = _split(url)
    if scheme == "s3":
        _s3_client().delete_object(Bucket=bucket, Key=key)
    elif scheme == "gs":
        blob = _gcs_bucket(bucket).blob(key)
        if blob.exists():
            blob.delete()
    else:
        Path(url).unlink(missing_ok=True)


def upload_file(local_path: str, url: str) -> None:
    """Copy a local file to a URL (or a local path)."""
    scheme, bucket, key = _split(url)
    if scheme == "s3":
        _s3_client().upload_file(local_path, bucket, key)
    elif scheme == "gs":
        _gcs_bucket(bucket).blob(key).upload_from_filename(local_path)
    else:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local_path, url)


def download_file(url: str, local_path: str) -> None:
    """Copy a file/object from a URL (or a local path) to a local file, streamed (not held in memory)."""
    scheme, bucket, key = _split(url)
    Path(local_path).parent.mkdir(parents=True, exist_ok=True)
    if scheme == "s3":
        _s3_client().download_file(bucket, key, local_path)
    elif scheme == "gs":
        _gcs_bucket(bucket).blob(key).download_to_filename(local_path)
    else:
        shutil.copyfile(url, local_path)
