"""The jobs' typed configs, one module per job (``plan_config``, ``convert_config``, ``verify_config``,
``train_config``, ``evaluate_config``, ``tokenizer_config``) on the shared pieces in ``config_base``.

Light core: pydantic only. A config imports no job and no document (the documents embed configs, and the Airflow
DAG builds its trigger form from them), so this package sits just above the core in the import layers.
"""
