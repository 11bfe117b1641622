"""Which reader serves ``--dataset``: object storage (``objstore``), files (local or Hub, ``sources``, with
parquet read by ``parquet``), or ``datasets.load_dataset`` (``hfdatasets``); and the chunks of documents each
one hands the tokenizer workers.

``--source_format auto`` (the default) reads files; a Hub id whose layout holds no JSON-lines or parquet
files for the subset (or that is asked for another split than train) is read with ``datasets`` instead.
``files`` never falls back; ``datasets`` always uses ``load_dataset``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.data.hfdatasets import iter_dataset_documents, resolve_dataset
from cpt_tasks.data.objstore import resolve_objects
from cpt_tasks.data.order import Chunk, iter_blocks, iter_chunks, iter_documents, shuffle_documents
from cpt_tasks.data.sources import NoFilesError, OpenFiles, Source, open_blocks, resolve_source
from cpt_tasks.errors import MissingTextField, UserError
from cpt_tasks.storage import Network, is_remote


def resolve_input(cfg: ConvertConfig) -> Source:
    """Resolve ``cfg.dataset`` (+ subset, split, revision) to a Source; UserError naming what is wrong."""
    dataset, subset, split = cfg.dataset, cfg.data_subset, cfg.splits[0]
    if is_remote(dataset):
        if cfg.source_format == "datasets":
            raise UserError(f"--source_format datasets reads a hub id or a local folder, not {dataset}")
        return resolve_objects(dataset, subset, split, Network.from_config(cfg))
    if cfg.source_format == "datasets":
        return resolve_dataset(dataset, subset, split, cfg.revision, Network.from_config(cfg))
    try:
        return resolve_source(dataset, subset, split, cfg.revision, Network.from_config(cfg))
    except NoFilesError as exc:
        if cfg.source_format == "auto" and _is_hub_id(dataset):
            return resolve_dataset(dataset, subset, split, cfg.revision, Network.from_config(cfg))
        raise UserError(f"{exc} (--source_format datasets reads other layouts through datasets.load_dataset)") \
            from None


def _is_hub_id(dataset: str) -> bool:
    return not Path(dataset).expanduser().exists() and not dataset.startswith((".", "/", "~")) \
        and dataset.count("/") == 1


def iter_input_chunks(source: Source, cfg: ConvertConfig, opened: OpenFiles | None = None) -> Iterator[Chunk]:
    """The source's documents in conversion order, in chunks for the tokenizer workers (``opened``: the files
    being read, see :class:`~cpt_tasks.data.sources.OpenFiles`)."""
    if source.kind == "datasets":
        documents = iter_dataset_documents(source, cfg.text_field, Network.from_config(cfg))
        if cfg.shuffle:
            documents = shuffle_documents(documents, np.random.Generator(np.random.PCG64(cfg.seed)),
                                          cfg.shuffle_buffer)
        return iter_chunks(documents)
    if cfg.shuffle:
        return iter_chunks(iter_documents(source.files, True, cfg.seed, cfg.shuffle_buffer, cfg.text_field, opened))
    return iter_blocks(source.files, text_field=cfg.text_field, opened=opened)


def record_error(source: Source, chunk: Chunk, error: tuple[int, str | MissingTextField]) -> UserError:
    """The error to raise for the record of ``chunk`` a tokenizer worker could not read (``error``: its line in
    the chunk and why), at ``<file>, <unit> N``: a MissingTextField (its caller names its own option), else a
    UserError. The unit is a parquet file's row, a JSON array file's record, else a line."""
    line, problem = error
    file_index, number = chunk.locate(line)
    src = source.files[file_index]
    unit = "row" if src.rel.endswith(".parquet") else "record" if open_blocks(src)[0] else "line"
    location = f"{src.rel}, {unit} {number}"
    if isinstance(problem, MissingTextField):
        return problem.at(location)
    return UserError(f"{location}: {problem}")
