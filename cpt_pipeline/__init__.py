"""The DAG's building blocks, used only in the orchestration environment (Airflow).

``settings`` (deployment from the environment) and ``steps`` (what each step runs) import no Airflow, so they
stay testable anywhere; ``params``, ``operators`` and ``lineage`` adapt them to Airflow's SDK and providers.
"""
