"""The conversion's completion marker and the versions of the code that wrote it.

``manifest.json`` (:class:`~cpt_tasks.documents.convert_docs.ConvertManifest`, located and read with
:func:`~cpt_tasks.documents.convert_docs.read_manifest`) is written last, atomically, into ``out_root``: a folder
without a valid one is incomplete and never trusted, and one whose fingerprint is this conversion's makes it
already complete (:func:`~cpt_tasks.runs.completion.find_complete` decides). Its ``fingerprint``
(:func:`~cpt_tasks.data.fingerprint.fingerprint`) hashes everything that determines the output bytes.
"""

from __future__ import annotations

from cpt_tasks import __version__
from cpt_tasks.convert.mds import MDS_VERSION
from cpt_tasks.data.fingerprint import CONVERTER_VERSION


def code_version(backend: str) -> dict[str, str]:
    """Versions of the code that produced the bytes."""
    from importlib.metadata import version

    versions = {"cpt-pipeline": __version__, "converter": CONVERTER_VERSION, "mds": str(MDS_VERSION)}
    versions[backend] = version(backend)
    return versions
