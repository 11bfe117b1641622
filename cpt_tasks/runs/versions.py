"""The versions of the code that ran a job (recorded in the run manifest and the evaluation report)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from cpt_tasks import __version__

PACKAGES = ("llm-foundry", "mosaicml", "mosaicml-streaming", "torch", "transformers")


def code_version() -> dict[str, str]:
    """Versions of the code that trained the model."""
    versions = {"cpt-pipeline": __version__}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions
