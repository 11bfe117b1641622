"""cpt_tasks: the jobs the pipeline's pods run (plan, convert, verify, train) and their light core.

Importing this package (and its config modules) must stay cheap and free of torch, transformers,
streaming and llm-foundry: the Airflow DAG imports the light core at parse time.
"""

__version__ = "0.1.0"
