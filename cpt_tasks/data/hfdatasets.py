"""Any other dataset through ``datasets``: ``load_dataset(dataset, name=data_subset, split=split,
streaming=True, revision=commit)``, as LLM-Foundry's ``convert_dataset_hf.py`` reads the Hub.

For a Hub dataset that is not in the Dolmino file layout (configs, CSV, Arrow, scripts-free loaders...) or a
local folder that ``datasets`` can load (its ``data_files`` inferred). A Hub dataset is pinned to the commit
its revision resolves to (``HfApi().dataset_info(...).sha``), which the fingerprint records; a local folder is
fingerprinted by its files' sha256, like a local file source. Records stream in the dataset's own order (one
"file"); ``--text_field`` names the column, which must hold strings (a null one is an empty document: skipped and
counted). The seeded shuffle buffer is the same as for files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cpt_tasks.cache import sha256_file_cached
from cpt_tasks.data.network import Network
from cpt_tasks.data.sources import Source, SourceFile
from cpt_tasks.errors import MissingTextField, UserError

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


def load_streaming(source: Source, network: Network):
    """``datasets.load_dataset(..., streaming=True)`` for the source; UserError naming what is wrong. Its reads
    go through huggingface_hub's HfFileSystem, bounded by ``network``'s read timeout (as its per-request timeout)
    and retries."""
    import datasets
    from datasets import DownloadConfig, load_dataset
    from huggingface_hub import constants

    max_retries = network.max_retries
    datasets.config.STREAMING_READ_MAX_RETRIES = max_retries
    constants.HF_HUB_ETAG_TIMEOUT = constants.HF_HUB_DOWNLOAD_TIMEOUT = network.read_timeout
    local = source.revision is None
    if local and Path(source.dataset).is_file():
        builder = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".arrow": "arrow", ".txt": "text",
                   ".json": "json", ".jsonl": "json"}.get(Path(source.dataset).suffix, "json")
        args, kwargs = (builder,), {"data_files": source.dataset}
    else:
        args, kwargs = (source.dataset,), {"name": source.subset, "revision": source.revision}
    try:
        return load_dataset(*args, **kwargs, split=source.split, streaming=True,
                            download_config=DownloadConfig(max_retries=max_retries))
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise UserError(f"--dataset {source.dataset} --data_subset {source.subset} --splits {source.split}: "
                        f"datasets cannot load it: {exc}") from exc


def iter_dataset_documents(source: Source, text_field: str,
                           network: Network) -> Iterator[tuple[int, int, str | None]]:
    """Every record's text as (0, 1-based row number, text or None); UserError naming the dataset, row and field
    (MissingTextField without the field)."""
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
