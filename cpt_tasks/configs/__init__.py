"""The jobs' typed configs, one module per job (``convert``, ``plan``, ``verify``, ``train``, ``evaluate``) on the
shared pieces in ``base``.

Light core: pydantic only. A config imports no job and no document (the documents embed configs, and the Airflow
DAG builds its trigger form from them), so this package sits just above the core in the import layers.
"""
