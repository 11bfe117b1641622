"""Reading and writing documents: one loader for every model, validation on read and on write."""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator

from cpt_tasks.configs.config_base import StrictModel
from cpt_tasks.errors import UserError
from cpt_tasks.storage import read_bytes, write_bytes_atomic

D = TypeVar("D", bound="Document")


class DocumentError(UserError):
    """A document that is missing, not JSON, of another format or version, or not valid for its model."""


class Document(StrictModel):
    """A document with a ``format`` field naming its kind and version (``cpt-pipeline/<kind>/v<N>``)."""

    FORMAT: ClassVar[str]
    KIND: ClassVar[str]  # what it is, in words: "a plan", "a conversion manifest", ...

    format: str = Field(description="The document's kind and version, cpt-pipeline/<kind>/v<N>")

    @model_validator(mode="before")
    @classmethod
    def _default_format(cls, data: Any) -> Any:
        if isinstance(data, dict) and "format" not in data:
            return {"format": cls.FORMAT, **data}
        return data

    @field_validator("format")
    @classmethod
    def _this_format(cls, value: str) -> str:
        if value != cls.FORMAT:
            raise ValueError(f"format {value!r} is not {cls.FORMAT!r}")
        return value


def _problems(exc: ValidationError) -> str:
    shown = [f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}" for err in exc.errors()[:5]]
    more = exc.error_count() - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def parse_document(data: bytes | str, model: type[D], where: str) -> D:
    """``data`` as a ``model``; DocumentError naming ``where`` (a file, URL or option) and what is wrong."""
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise DocumentError(f"{where}: invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise DocumentError(f"{where}: not {model.KIND} (a JSON object with \"format\": {model.FORMAT!r})")
    found = body.get("format")
    if found != model.FORMAT:
        kind, _, version = model.FORMAT.rpartition("/")
        if isinstance(found, str) and found.rpartition("/")[0] == kind:
            raise DocumentError(f"{where}: {model.KIND} of version {found.rpartition('/')[2]}, this code reads "
                                f"{version} ({model.FORMAT}); produce it again with this version")
        raise DocumentError(f"{where}: not {model.KIND} (format {found!r}, expected {model.FORMAT!r})")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise DocumentError(f"{where}: invalid {model.KIND}: {_problems(exc)}") from None


def dump_document(document: Document) -> bytes:
    """The document as JSON, checked to read back as the same model (what is written can be read)."""
    data = document.model_dump_json(indent=2).encode()
    parse_document(data, type(document), f"{type(document).__name__} being written")
    return data


def read_document(url: str, model: type[D], option: str = "") -> tuple[D, str]:
    """The ``model`` stored at ``url`` and the sha256 of its bytes; DocumentError when it is missing or
    invalid, naming ``option`` (the flag it came from) and the location."""
    where = f"{option} {url}".strip()
    data = read_bytes(url)
    if data is None:
        raise DocumentError(f"{where}: no such file")
    return parse_document(data, model, where), hashlib.sha256(data).hexdigest()


def find_document(url: str, model: type[D]) -> D | None:
    """The ``model`` at ``url``, or None when there is none or it is not a valid one (e.g. an incomplete or
    foreign folder's marker: never trusted, never an error)."""
    found = _find(url, model)
    return found[0] if found else None


def find_document_sha256(url: str, model: type[D]) -> tuple[D, str] | None:
    """As :func:`find_document`, with the sha256 of the very bytes that were parsed (one read)."""
    found = _find(url, model)
    return (found[0], hashlib.sha256(found[1]).hexdigest()) if found else None


def _find(url: str, model: type[D]) -> tuple[D, bytes] | None:
    data = read_bytes(url)
    if data is None:
        return None
    try:
        return parse_document(data, model, url), data
    except DocumentError:
        return None


def write_document(url: str, document: Document) -> str:
    """Write ``document`` atomically to ``url`` (local or object storage); the sha256 of what was written."""
    data = dump_document(document)
    write_bytes_atomic(url, data)
    return hashlib.sha256(data).hexdigest()
