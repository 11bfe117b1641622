"""Object-storage inputs: ``--dataset s3://bucket/prefix/`` (or ``gs://``) listed, fingerprinted and streamed.

What makes a dataset here; every call to the store goes through the storage layer (``cpt_tasks.storage``: its
one client per scheme, its timeouts and retries, its pinned, resumable reads).

Listing: every JSON-lines and parquet object under the prefix (recursive, sorted by key); with
``--data_subset X`` those under ``<prefix>/data/X/`` or else ``<prefix>/X/``, like a local folder. Each object
is recorded by key (relative to that root), size and digest, never by bucket: the fingerprint is content-
addressed, as for a local folder. The digest is the object's full-object SHA-256 checksum when the store keeps
one, else its ETag when that is a plain MD5 (no ``-``: not multipart; GCS: the object's MD5), else the ETag alone
is recorded and only the size is checked (``algorithm`` None); the manifest records which.

Reading: objects are streamed (no local copy; parquet excepted, see ``parquet.py``) through
:class:`~cpt_tasks.data.verified.VerifyingReader` over the layer's
:class:`~cpt_tasks.storage.resuming.ResumingStream`, so a file read to its end that does not match its listing
raises BadDataError (exit 3). Every call uses ``--connect_timeout``/``--read_timeout``/``--max_retries``, and reads
are pinned to the listed version (S3 ``If-Match`` on the ETag, GCS ``ifGenerationMatch``): an object changed since
it was listed is bad data, not a splice of two versions. A stream cut mid-object is resumed by a ranged GET from
the byte reached, at most ``max_retries`` times in a row without progress; then the conversion fails as transient
(exit 1).
"""

from __future__ import annotations

from functools import partial

from cpt_tasks.data.sources import SUFFIXES, NoFilesError, Source, SourceFile
from cpt_tasks.data.verified import VerifyingReader
from cpt_tasks.errors import UserError
from cpt_tasks.storage import BucketUnavailable, Network, ObjectInfo, ObjectStore, ResumingStream, folder_prefix
from cpt_tasks.storage import object_store, parse_url


def resolve_objects(url: str, subset: str | None, split: str, network: Network) -> Source:
    """List ``url``'s JSON-lines and parquet objects (see the module doc); UserError naming the URL if none."""
    parsed = parse_url(url)
    scheme, bucket, key = parsed
    if not bucket:
        raise UserError(f"--dataset {url}: expected {scheme}://bucket/prefix")
    if split != "train":
        raise UserError(f"--splits {split}: an object-storage dataset has one split; use --splits train")
    store = object_store(parsed, network)
    if key and not key.endswith("/") and key.endswith(SUFFIXES) and not subset:
        roots = [key.rpartition("/")[0] + "/" if "/" in key else ""]
        listed = [o for o in _list(store, key) if o.key == key]  # one object named by its key
    else:
        prefix = folder_prefix(key)
        roots = [f"{prefix}data/{subset}/", f"{prefix}{subset}/"] if subset else [prefix]
        listed = []
        for root in roots:
            listed = [o for o in _list(store, root) if o.key.endswith(SUFFIXES)]
            if listed:
                roots = [root]
                break
    if not listed:
        where = " or ".join(store.url(r) for r in roots)
        raise NoFilesError(f"--dataset {url}{f' --data_subset {subset}' if subset else ''}: no "
                           f"{', '.join(SUFFIXES)} objects at {where}")
    root = roots[0]
    files = []
    for info in sorted(listed, key=lambda o: o.key):
        digest, algorithm = _digest(store, info)
        name = store.url(info.key)
        files.append(SourceFile(url=name, rel=info.key[len(root):], size=info.size, sha256=digest,
                                algorithm=algorithm, opener=partial(_open_verified, store, info, digest, algorithm)))
    return Source(kind=scheme, dataset=url, subset=subset, split=split, revision=None, files=files)


def _list(store: ObjectStore, prefix: str) -> list[ObjectInfo]:
    try:
        return store.list(prefix)
    except BucketUnavailable as exc:
        raise UserError(f"--dataset {store.url(prefix)}: {exc}") from exc


def _digest(store: ObjectStore, info: ObjectInfo) -> tuple[str, str | None]:
    """(digest, algorithm) the listing records for an object: its SHA-256 checksum, its plain MD5, or the ETag
    with algorithm None (the size alone is checked)."""
    checksum = None
    if info.sha256_kept:
        try:
            checksum = store.sha256(info.key)
        except BucketUnavailable as exc:
            raise UserError(f"--dataset {store.url(info.key)}: {exc}") from exc
    if checksum:
        return checksum, "sha256"
    return (info.etag, "md5") if _plain_md5(info.etag) else (info.etag, None)


def _plain_md5(etag: str) -> bool:
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())


def _open_verified(store: ObjectStore, info: ObjectInfo, digest: str, algorithm: str | None) -> VerifyingReader:
    name = store.url(info.key)
    return VerifyingReader(ResumingStream(store, info.key, info.size, info.pin, name), name, info.size, digest,
                           algorithm)
