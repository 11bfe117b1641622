"""The one test of "already done" for every job's work (a conversion, a training run, an evaluation): its
completion marker (a document written last) is there, valid, and belongs to this very work. A marker that is
missing, invalid or another work's is never trusted.

``ALREADY_COMPLETE`` is the status a job reports when it found its work done (the documents' ``status``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from cpt_tasks.documents import find_document

ALREADY_COMPLETE = "already_complete"
D = TypeVar("D")


def find_complete(marker: str, model: type[D], belongs: Callable[[D], bool]) -> D | None:
    """The completion marker at ``marker`` when it is a valid ``model`` and ``belongs`` to this work, else None."""
    return find_marker(marker, model, belongs)[0]


def find_marker(marker: str, model: type[D], belongs: Callable[[D], bool]) -> tuple[D | None, D | None]:
    """(the marker when it belongs to this work, else None; the valid marker found there, whoever's work it is),
    from one read: for a job that must also refuse to overwrite another work's output."""
    found = find_document(marker, model)
    return (found if found is not None and belongs(found) else None), found
