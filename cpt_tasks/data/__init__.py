"""Reading the input data, shared by the plan and convert jobs: where a source's files are and how they are
read (``sources``: local files and the Hub; ``objstore``: a dataset on object storage, through the one storage
layer ``cpt_tasks.storage``, whose ``network`` bounds every call; ``hub``, ``hfdatasets``; ``verified``: size and
digest checks; ``parquet``), in what order (``order``), encoded by which processes (``encode``), and the
fingerprint of a conversion (``fingerprint``). ``readers`` chooses among them for a ``ConvertConfig``; ``shards``
reads MDS shards back (verify and evaluate).

A library below the jobs: it imports configs, documents and the core, never a job.
"""
