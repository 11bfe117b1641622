"""Reading the input data, shared by the plan and convert jobs: where a source's files are and how they are
read (``sources``: local files and the Hub; ``objstore``, ``hub``, ``hfdatasets``; ``network``: timeouts and
retries; ``verified``: size and digest checks; ``parquet``), in what order (``order``), encoded by which
processes (``encode``), and the fingerprint of a conversion (``fingerprint``). ``inputs`` chooses among them
for a ``ConvertConfig``; ``shards`` reads MDS shards back (verify and evaluate).

A library below the jobs: it imports configs, documents and the core, never a job.
"""
