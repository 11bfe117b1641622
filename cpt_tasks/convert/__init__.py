"""The converter job: JSON/JSONL/parquet documents -> tokenized, packed, budgeted MDS shards with a manifest.

``run.convert(ConvertConfig) -> ConvertResult`` is the entry point; ``cpt-tasks convert`` is its CLI. The
reading side (sources, order, encoding, the fingerprint) is the shared library ``cpt_tasks.data``; this package
keeps what only the conversion does: packing rows (``pack``), writing MDS (``mds``) and the manifest.
"""
