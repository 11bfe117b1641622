"""The Hugging Face Hub as a conversion reads it: list a dataset's files at a pinned commit, and stream each
file with timeouts, retries, resumption by byte range and a check of every byte against its listing.

Everything goes through ``huggingface_hub``'s own HTTP session (``get_session()``: its proxies, offline mode,
``configure_http_backend``), its endpoint (``HF_ENDPOINT``) and its auth headers (``HF_TOKEN``), with
``ConvertConfig``'s connect/read timeouts on every request:

- ``dataset_info`` pins the revision to a commit; the tree listing is paged here (the library's own pager has no
  timeout and retries 429s twenty times), each page retried on its own.
- A file is one GET of its ``resolve`` URL (redirects followed, to the CDN on the real Hub). When the transfer
  is cut, the next attempt asks for ``Range: bytes=N-`` from the byte reached and checks the ``206``'s
  ``Content-Range``; the hash runs on over the resumed bytes, so the file is read, and checked, exactly once.
- Failures: 5xx/429/timeouts/resets are retried (``max_retries`` consecutive attempts without a byte of
  progress), then TransientError (exit 1) naming the host and the file; a listed file that is gone (404 at the
  pinned commit) or whose bytes differ from the listing is BadDataError (exit 3); a private/gated dataset
  without access is UserError (exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlparse

from cpt_tasks.data.verified import VerifyingReader
from cpt_tasks.errors import BadDataError, TransientError, UserError
from cpt_tasks.storage.network import RETRY_STATUSES, Network, call_with_retries, describe_failure

HUB_PREFIX = "hf://datasets/"
GIT_BLOB = "git-sha1"  # a non-LFS file's digest: the git blob id, sha1 of b"blob <size>\0" + content
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class HubEntry:
    """A listed file: its path in the repository, size, and digest (LFS sha256, else the git blob id)."""

    path: str
    size: int
    digest: str
    algorithm: str  # "sha256" or GIT_BLOB


def endpoint_host() -> str:
    """The Hub host requests go to (``HF_ENDPOINT``, read when called so tests can point it elsewhere)."""
    from huggingface_hub import constants

    return urlparse(constants.ENDPOINT).netloc or constants.ENDPOINT


def hub_url(dataset: str, commit: str, path: str) -> str:
    """The machine-independent name a hub file gets in the manifest: ``hf://datasets/<id>@<commit>/<path>``."""
    return f"{HUB_PREFIX}{dataset}@{commit}/{path}"


def split_hub_url(url: str) -> tuple[str, str, str]:
    """(dataset, commit, path) of a :func:`hub_url`."""
    dataset, _, rest = url[len(HUB_PREFIX):].partition("@")
    commit, _, path = rest.partition("/")
    return dataset, commit, path


def is_transient(exc: BaseException) -> bool:
    """Whether a failed request may succeed when tried again: timeouts, refused/reset/cut connections,
    429 and 5xx. Offline mode and every other HTTP status are final."""
    import requests
    import urllib3
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return False
    response = getattr(exc, "response", None)
    if isinstance(exc, requests.HTTPError) and response is not None:
        return response.status_code in RETRY_STATUSES or response.status_code >= 500
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                            urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, EOFError))


def _final_error(exc: BaseException, what: str) -> Exception:
    """The UserError for a request the Hub refused for good (no such dataset/revision/path, no access)."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return UserError(f"{what}: HF_HUB_OFFLINE is set, so the Hub cannot be read; unset it or give a local "
                         "copy of the dataset")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return UserError(f"{what}: access denied (HTTP {status}); a private or gated dataset needs HF_TOKEN "
                         "with access")
    if status == 404:
        return UserError(f"{what}: not found on {endpoint_host()} (HTTP 404)")
    return UserError(f"{what}: {describe_failure(exc)}")


def _hub_call(call, network: Network, what: str):
    try:
        return call_with_retries(call, network, endpoint_host(), what, is_transient)
    except TransientError:
        raise
    except Exception as exc:
        import requests
        from huggingface_hub.errors import OfflineModeIsEnabled

        if isinstance(exc, (requests.HTTPError, OfflineModeIsEnabled)):
            raise _final_error(exc, what) from exc
        raise


def pin_commit(dataset: str, revision: str | None, network: Network) -> str:
    """The commit ``revision`` of a Hub dataset resolves to (dataset_info, with timeouts and retries)."""
    from huggingface_hub import HfApi, constants

    api = HfApi(endpoint=constants.ENDPOINT)
    info = _hub_call(lambda: api.dataset_info(dataset, revision=revision, timeout=network.timeouts), network,
                     f"--dataset {dataset} (revision {revision or 'main'}): dataset info")
    return info.sha


def list_hub_files(dataset: str, folder: str | None, revision: str | None,
                   network: Network) -> tuple[str, list[HubEntry]]:
    """(commit, every file under ``folder``) of a Hub dataset at ``revision`` (resolved to its commit)."""
    from huggingface_hub import constants

    what = f"--dataset {dataset} (revision {revision or 'main'})"
    commit = pin_commit(dataset, revision, network)
    url = f"{constants.ENDPOINT}/api/datasets/{dataset}/tree/{quote(commit, safe='')}"
    if folder:
        url += "/" + quote(folder, safe="")
    params: dict | None = {"recursive": True, "expand": False}
    entries: list[HubEntry] = []
    page = 0
    while url:
        page += 1
        response = _hub_call(lambda: _get_page(url, params, network), network,
                             f"{what}: listing of {folder or '/'} (page {page})")
        entries += [_entry(item) for item in response.json() if item.get("type") == "file"]
        url, params = response.links.get("next", {}).get("url"), None  # the next link carries its query
    return commit, entries


def _get_page(url: str, params: dict | None, network: Network):
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    response = get_session().get(url, params=params, headers=build_hf_headers(), timeout=network.timeouts)
    hf_raise_for_status(response)
    return response


def _entry(item: dict) -> HubEntry:
    lfs = item.get("lfs")
    if lfs:
        return HubEntry(item["path"], int(item["size"]), lfs["oid"], "sha256")
    return HubEntry(item["path"], int(item["size"]), item["oid"], GIT_BLOB)


class GitBlobReader(VerifyingReader):
    """A VerifyingReader for a non-LFS file: its listing gives the git blob id, the sha1 of
    ``b"blob <size>\\0"`` followed by the content."""

    def __init__(self, raw, name: str, size: int, digest: str) -> None:
        super().__init__(raw, name, size, digest, "sha1")
        self.hasher.update(b"blob %d\0" % size)


def open_hub_file(url: str, name: str, size: int, digest: str, algorithm: str, network: Network) -> VerifyingReader:
    """A checked, resumable binary stream of the hub file ``url`` (a :func:`hub_url`)."""
    stream = HubFileStream(url, name, size, network)
    if algorithm == GIT_BLOB:
        return GitBlobReader(stream, name, size, digest)
    return VerifyingReader(stream, name, size, digest, algorithm)


class HubFileStream:
    """The bytes of one hub file, fetched with one GET and resumed with ``Range`` requests after a cut.

    ``read(n)`` retries transparently: a failed attempt (timeout, reset, early end, 5xx/429) reopens at the
    byte reached after a backoff; ``max_retries`` consecutive failures without progress raise TransientError.
    """

    def __init__(self, url: str, name: str, size: int, network: Network) -> None:
        from huggingface_hub import constants

        self.dataset, self.commit, path = split_hub_url(url)
        # hf_hub_url's template is fixed when the library is imported; the endpoint is read now, like HfApi's
        self.url = f"{constants.ENDPOINT}/datasets/{self.dataset}/resolve/{quote(self.commit, safe='')}/{quote(path)}"
        self.name, self.size, self.network = name, size, network
        self.host = endpoint_host()
        self.pos = 0  # bytes delivered to the reader
        self.end: int | None = None  # where the open response's body ends (None: unknown)
        self.response = None
        self.failures = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(1 << 22), b""))
        while True:
            try:
                if self.response is None:
                    self._connect()
                data = self.response.raw.read(n)
                if not data and self.end is not None and self.pos < self.end:
                    raise EOFError(f"connection closed at byte {self.pos:,} of {self.end:,}")
            except (BadDataError, UserError, TransientError):
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._fail(exc)
                continue
            self.pos += len(data)
            if data:
                self.failures = 0
            return data

    def _connect(self) -> None:
        from huggingface_hub.utils import build_hf_headers, get_session

        headers = {**build_hf_headers(), "Accept-Encoding": "identity"}  # bytes as stored: ranges and hashes
        if self.pos:
            headers["Range"] = f"bytes={self.pos}-"
        response = get_session().get(self.url, headers=headers, stream=True, timeout=self.network.timeouts)
        self.host = urlparse(response.url).netloc or self.host
        self._check_status(response)
        start = 0
        if response.status_code == 206:
            match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != self.pos:
                response.close()
                raise EOFError(f"asked for bytes from {self.pos:,}, got Content-Range "
                               f"{response.headers.get('Content-Range')!r}")
            start = self.pos
        length = response.headers.get("Content-Length")
        self.end = start + int(length) if length and length.isdigit() else None
        self.response = response
        if start < self.pos:  # a 200 to a Range request: the whole file again; skip what was delivered
            skip = self.pos
            while skip:
                chunk = response.raw.read(min(skip, 1 << 22))
                if not chunk:
                    raise EOFError(f"the server's full response ended before byte {self.pos:,}")
                skip -= len(chunk)

    def _check_status(self, response) -> None:
        status = response.status_code
        if status in (200, 206):
            return
        response.close()
        where = f"{self.name} (dataset {self.dataset}, revision {self.commit})"
        if status in (404, 410):
            raise BadDataError(f"{where}: HTTP {status} from {self.host}: the file its listing gave is gone "
                               "(the repository changed or is broken); plan again to list the current files")
        if status == 416:
            raise BadDataError(f"{where}: the server has no bytes from {self.pos:,} on, its listing gave "
                               f"{self.size:,}")
        if status in (401, 403):
            raise UserError(f"{where}: access denied (HTTP {status}); a private or gated dataset needs "
                            "HF_TOKEN with access")
        import requests

        error = requests.HTTPError(f"HTTP {status}", response=response)
        if is_transient(error):
            raise error
        raise UserError(f"{where}: HTTP {status} from {self.host}")

    def _fail(self, exc: BaseException) -> None:
        import time

        from cpt_tasks.storage.network import backoff_seconds

        self.close()
        self.failures += 1
        if self.failures > self.network.max_retries:
            raise TransientError(f"{self.host}: {self.name} (dataset {self.dataset}, revision {self.commit}): "
                                 f"{describe_failure(exc)} at byte {self.pos:,} of {self.size:,} "
                                 f"({self.failures} attempts without progress)") from exc
        time.sleep(backoff_seconds(self.failures))

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
            self.response = None
