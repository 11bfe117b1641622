"""The converter job: JSON/JSONL/parquet documents -> tokenized, packed, budgeted MDS shards with a manifest.

``convert_job.convert(ConvertConfig) -> ConvertResult`` is the entry point; ``cpt-tasks convert`` and
``convert-subset`` are its commands (``convert_job.command``, ``subset_job.command_subset``: a planned subset or
one part of one). The
reading side (sources, order, encoding, the fingerprint) is the shared library ``cpt_tasks.data``; this package
keeps what only the conversion does: packing rows (``pack``), writing MDS (``mds``) and the manifest (``convert_manifest``).
"""
