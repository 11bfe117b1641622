"""MLflow, in one place: the store and a step's run (``mlflow_store``: pre-flight, found by name on a retry), the
run finished FAILED on any error (``tracked_run``), and the ``cpt_mlflow`` logger the worker processes use
(``mlflow_logger``)."""
