"""The laptop tooling around the DAG, never part of a deployment: ``make demo`` (``demo``, reading ``airflow dags
test`` with ``dags_test_log``), the self-contained Airflow home and ``make airflow``'s supervisor (``airflow_home``,
``supervisor``, ``watchdog``), questions to its REST API (``airflow_api``), ``make pods`` (``pods``), and the
bundled samples, small tokenizer and tiny model that ``make setup`` writes (``samples``, the ``cpt-samples`` CLI).
"""
