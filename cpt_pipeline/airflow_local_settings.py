"""Airflow's local settings for cpt-pipeline, loaded by every Airflow process (API server, scheduler,
workers, ``airflow dags test``): the trigger form's mix format, so a mix whose proportions do not sum to 1
is rejected when the run is triggered. Installed as ``$AIRFLOW_HOME/config/airflow_local_settings.py`` by
``make demo``/``make airflow`` and by the Airflow image (docker/airflow/Dockerfile)."""

from cpt_pipeline.params import register_formats

register_formats()
