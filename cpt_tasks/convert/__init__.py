"""The converter job: JSON/JSONL documents -> tokenized, packed, budgeted MDS shards with a manifest.

``convert(ConvertConfig) -> ConvertResult`` is the entry point; ``cpt-tasks convert`` is its CLI.
Only the config is imported here, so the light core stays free of heavy dependencies.
"""

from cpt_tasks.convert.config import ConvertConfig

__all__ = ["ConvertConfig"]
