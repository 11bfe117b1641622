"""Any other dataset through ``datasets``: ``load_dataset(dataset, name=data_subset, split=split,
streaming=True, revision=commit)``, as LLM-Foundry's ``convert_dataset_hf.py`` reads the Hub.

For a Hub dataset that is not in the Dolmino file layout (configs, CSV, Arrow, scripts-free loaders...) or a
local folder that ``datasets`` can load (its ``data_files`` inferred). A Hub dataset is pinned to the commit
its revision resolves to (``HfApi().dataset_info(...).sha``), which the fingerprint records; a local folder is
fingerprinted by its files' sha256, like a local file source. Records stream in the dataset's own order (one
"file"); ``--text_field`` names the column, which must hold strings (a null one is an empty document: skipped and
counted). The seeded shuffle buffer is the same as for files.

Every HTTP request ``datasets`` makes for a Hub dataset goes through huggingface_hub's session (``HfApi`` for the
card and commit, ``HfFileSystem`` for the listing and the file reads), whatever timeout its caller passes (10 s,
100 s or none at all for a tree listing). While such a dataset is read, :func:`bounded_hub_requests` installs a
session whose adapter (``bounded_adapter.BoundedAdapter``) is the one place that applies ``--connect_timeout``,
``--read_timeout`` and ``--max_retries`` to each of them: a stall, a refused or reset connection or a 5xx/429
ends as a TransientError (exit 1) naming the host, the dataset and the request, within
``Network.worst_case_seconds()`` of that request's start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from cpt_tasks.cache import sha256_file_cached
from cpt_tasks.data.sources import Source, SourceFile
from cpt_tasks.errors import MissingTextField, UserError
from cpt_tasks.storage.network import Network

BATCH = 1000


def resolve_dataset(dataset: str, subset: str | None, split: str, revision: str | None,
                    network: Network | None = None) -> Source:
    """The ``datasets`` source: a local folder (files hashed) or a Hub id pinned to its commit (``network``: the
    timeouts and retries of that call)."""
    path = Path(dataset).expanduser()
    if path.exists():
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                     and not any(part.startswith(".") for part in
                                                                 p.relative_to(path).parts))
        root = path.parent if path.is_file() else path
        listed = [SourceFile(url=str(f), rel=f.relative_to(root).as_posix(), size=f.stat().st_size,
                             sha256=sha256_file_cached(f)) for f in files]
        return Source(kind="datasets", dataset=str(path.resolve()), subset=subset, split=split, revision=None,
                      files=listed)
    if dataset.count("/") != 1:
        raise UserError(f"--dataset {dataset}: no such file or folder, and not a hub id (org/name)")
    from cpt_tasks.data.hub import pin_commit

    commit = pin_commit(dataset, revision, network or Network())
    return Source(kind="datasets", dataset=dataset, subset=subset, split=split, revision=commit, files=[])


@contextmanager
def bounded_hub_requests(network: Network, label: str):
    """Within the block, every request huggingface_hub makes (so every one ``datasets`` makes to the Hub) goes
    through a :class:`BoundedAdapter`; on leaving it the default session comes back and datasets' own retries of a
    failed read are as they were."""
    import datasets
    import requests
    from huggingface_hub import configure_http_backend

    from cpt_tasks.data.bounded_adapter import BoundedAdapter  # requests: imported only when the Hub is read

    def bounded_session() -> requests.Session:
        session = requests.Session()
        adapter = BoundedAdapter(network, label)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    saved = datasets.config.STREAMING_READ_MAX_RETRIES
    datasets.config.STREAMING_READ_MAX_RETRIES = 1  # attempts: the adapter has retried the request already
    configure_http_backend(backend_factory=bounded_session)
    try:
        yield
    finally:
        configure_http_backend()
        datasets.config.STREAMING_READ_MAX_RETRIES = saved


def load_streaming(source: Source, network: Network):
    """``datasets.load_dataset(..., streaming=True)`` for the source; UserError naming what is wrong. A Hub
    dataset's requests are bounded by the caller's :func:`bounded_hub_requests`."""
    import datasets
    from datasets import DownloadConfig, load_dataset

    local = source.revision is None
    if local and Path(source.dataset).is_file():
        builder = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".arrow": "arrow", ".txt": "text",
                   ".json": "json", ".jsonl": "json"}.get(Path(source.dataset).suffix, "json")
        args, kwargs = (builder,), {"data_files": source.dataset}
    else:
        args, kwargs = (source.dataset,), {"name": source.subset, "revision": source.revision}
    try:
        return load_dataset(*args, **kwargs, split=source.split, streaming=True,
                            download_config=DownloadConfig(max_retries=network.max_retries))
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise UserError(f"--dataset {source.dataset} --data_subset {source.subset} --splits {source.split}: "
                        f"datasets cannot load it: {exc}") from exc


def iter_dataset_documents(source: Source, text_field: str,
                           network: Network) -> Iterator[tuple[int, int, str | None]]:
    """Every record's text as (0, 1-based row number, text or None); UserError naming the dataset, row and field
    (MissingTextField without the field); TransientError (exit 1) naming the host, dataset and request when
    the Hub stays unreachable."""
    hub = source.revision is not None
    label = f"--dataset {source.dataset} (revision {source.revision})"
    with bounded_hub_requests(network, label) if hub else nullcontext():
        yield from _iter_rows(source, text_field, network)


def _iter_rows(source: Source, text_field: str, network: Network) -> Iterator[tuple[int, int, str | None]]:
    stream = load_streaming(source, network)
    where = f"{source.dataset} [{source.subset or 'default'}/{source.split}]"
    columns = stream.column_names
    if columns is not None:
        if text_field not in columns:
            raise MissingTextField(text_field, columns, "column", where)
        stream = stream.select_columns([text_field])
    row = 1
    for batch in stream.iter(batch_size=BATCH):
        if text_field not in batch:
            raise MissingTextField(text_field, batch, "field", f"{where}, row {row}")
        for text in batch[text_field]:
            if text is not None and not isinstance(text, str):
                raise UserError(f"{where}, row {row}: '{text_field}' is {type(text).__name__}, expected a string")
            yield 0, row, text
            row += 1
