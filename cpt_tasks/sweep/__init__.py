"""The replay sweep (issue 27): short proxy runs, one per replay fraction, each evaluated against the proxy's
starting point, turned into a recommended replay fraction. ``recommendation`` reads the measured points from the
evaluation reports, fits forgetting against the fraction and recommends (or says plainly why it cannot);
``sweep_render`` writes the report as Markdown and a picture. Pure functions over documents: no training, no
Airflow."""
