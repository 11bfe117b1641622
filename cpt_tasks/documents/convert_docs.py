"""A conversion's documents: ``manifest.json`` (the completion marker beside the MDS splits) and the
result ``cpt-tasks convert``/``convert-subset`` hands to the DAG."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cpt_tasks.configs.config_base import StrictModel
from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.documents.document_base import Document, find_document
from cpt_tasks.layout import MANIFEST_FILE, PARTS_DIR, Split, part_name
from cpt_tasks.storage import join


class SourceFileInfo(StrictModel):
    """One input file, as the fingerprint and the manifest record it."""

    path: str = Field(description="Path relative to the dataset (or subset) root")
    size: int = Field(ge=0, description="Bytes")
    sha256: str = Field(description="Digest of the file, of the kind `algorithm` names: sha256 locally and "
                        "on the hub (LFS), an object's checksum or ETag on object storage")
    algorithm: str | None = Field("sha256", description="How the file is checked when read: sha256, md5 "
                                  "(a plain ETag), or None (size only; sha256 then holds the ETag)")


class SourceInfo(StrictModel):
    """What was read: a local folder or file, or a hub dataset at a commit."""

    kind: Literal["local", "hub", "s3", "gs", "datasets"] = Field(
        description="local file/folder, Hugging Face hub files, object storage, or `datasets.load_dataset`")
    dataset: str = Field(description="Hub id, or the resolved local path")
    subset: str | None = Field(description="The data_subset read")
    split: str = Field(description="The source split read")
    revision: str | None = Field(description="The hub commit read (None for local data)")
    files: list[SourceFileInfo] = Field(description="Every file, in read order")


class TokenizerRecord(StrictModel):
    """The tokenizer a conversion used: its files' hashes and the ids that frame every document."""

    name: str = Field(description="Hub id or folder as given")
    sha256: str = Field(description="sha256 over the tokenizer files' hashes")
    files: dict[str, str] = Field(description="File name -> sha256")
    bos_id: int = Field(description="Id placed before every document (bos_text)")
    eos_id: int = Field(description="Id placed after every document (eos_text)")
    vocab_size: int = Field(gt=0, description="Ids are in [0, vocab_size)")
    backend: str = Field(description="tiktoken or tokenizers (same ids)")


class Framing(StrictModel):
    """How documents were framed in the rows: the special tokens (texts and ids) around each one."""

    bos_text: str
    eos_text: str
    bos_id: int
    eos_id: int


class SplitCounts(StrictModel):
    """Counts of one output split."""

    documents: int = Field(ge=0, description="Documents with at least one token in the split")
    samples: int = Field(ge=0, description="Rows of concat_tokens")
    tokens: int = Field(ge=0, description="samples × concat_tokens")
    first_document: int | None = Field(None, description="Read-order ordinal of the split's first document")
    last_document: int | None = Field(None, description="Read-order ordinal of its last document")
    requested_samples: int | None = Field(None, description="Rows the budget asked for (None: all)")


class DocumentCounts(StrictModel):
    """Documents read from the source."""

    read: int = Field(ge=0, description="Records read")
    skipped_empty: int = Field(ge=0, description="Empty or whitespace-only documents skipped")
    skipped_null: int = Field(0, ge=0, description="Documents whose text is null, skipped (not in skipped_empty)")
    used: int = Field(ge=0, description="Documents with a token in train or val")


class Timings(StrictModel):
    """When the conversion ran and how fast."""

    started_at: str
    finished_at: str
    seconds: float = Field(ge=0)
    tokens_per_second: int = Field(ge=0)
    peak_rss_mb: dict[str, float] = Field(description="Peak memory of the main process and the workers")


class PartRecord(StrictModel):
    """One part of a conversion in parts, as the merged manifest records it."""

    part: int = Field(ge=0, description="Its number (its folder: <split>/part-NNNNN/)")
    fingerprint: str = Field(description="The part conversion's fingerprint")
    manifest: str = Field(description="Its own manifest (<out_root>/parts/part-NNNNN.json)")
    files: list[str] = Field(description="The input files it read (paths as the source lists them)")
    splits: dict[Split, SplitTotals] = Field(description="What it wrote")
    exhausted: bool = Field(description="Its files ran out before its share of the budgets was met")


class ConvertManifest(Document):
    """``<out_root>/manifest.json``: written last, so a folder without one is incomplete and never trusted."""

    FORMAT = "cpt-pipeline/convert-manifest/v1"
    KIND = "a conversion manifest"

    fingerprint: str = Field(description="sha256 of everything that determines the output bytes")
    code_version: dict[str, str] = Field(description="Versions of the code that produced the bytes")
    config: ConvertConfig = Field(description="The conversion's full config")
    source: SourceInfo
    tokenizer: TokenizerRecord
    concat_tokens: int = Field(gt=0)
    columns: dict[str, str] = Field(description="MDS column -> encoding")
    splits: dict[Split, SplitCounts]
    documents: DocumentCounts
    exhausted: bool = Field(description="The source ran out before the train and val budgets were met")
    timings: Timings
    parts: list[PartRecord] | None = Field(None, description="A conversion in parts: each part (the splits' "
                                           "index.json lists every part's shards under its folder)")

    @property
    def framing(self) -> Framing:
        """The special tokens around every document, as this conversion recorded them."""
        return Framing(bos_text=self.config.bos_text, eos_text=self.config.eos_text, bos_id=self.tokenizer.bos_id,
                       eos_id=self.tokenizer.eos_id)


class SplitTotals(StrictModel):
    """A split's headline counts."""

    documents: int = Field(ge=0)
    samples: int = Field(ge=0)
    tokens: int = Field(ge=0)


class ConvertSummary(Document):
    """The result of ``cpt-tasks convert`` / ``convert-subset`` (the DAG's XCom): status, location, counts."""

    FORMAT = "cpt-pipeline/convert-result/v1"
    KIND = "a conversion result"

    status: Literal["converted", "already_complete"]
    subset: str | None = Field(None, description="The planned subset (convert-subset)")
    out_root: str
    manifest: str = Field(description="Location of the manifest")
    fingerprint: str
    source: SourceInfo
    splits: dict[Split, SplitTotals]
    exhausted: bool


def manifest_location(out_root: str) -> str:
    """Where a conversion's manifest lies (of a conversion in parts: the merged one, written after every part)."""
    return join(out_root, MANIFEST_FILE)


def marker_location(cfg: ConvertConfig) -> str:
    """Where this conversion's own manifest goes: ``<out_root>/manifest.json``, or for a part of several
    ``<out_root>/parts/part-NNNNN.json``."""
    if cfg.parts == 1:
        return manifest_location(cfg.out_root)
    return join(cfg.out_root, PARTS_DIR, f"{part_name(cfg.part)}.json")


def split_location(cfg: ConvertConfig, split: str) -> str:
    """Where this conversion writes ``split``: ``<out_root>/<split>``, or for a part ``<out_root>/<split>/part-NNNNN``
    (one level deep: the split's merged index lists each part's shards under its folder)."""
    folder = join(cfg.out_root, split)
    return folder if cfg.parts == 1 else join(folder, part_name(cfg.part))


def read_manifest(out_root: str) -> ConvertManifest | None:
    """The manifest at ``out_root``, or None when there is none (or it is not a valid one)."""
    return find_document(manifest_location(out_root), ConvertManifest)
