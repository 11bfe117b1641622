"""The replay sweep's proxy-runs task: one entry per swept replay fraction, holding that proxy run's train and
evaluate argv rendered for this DAG run (``fraction`` and ``proxy_run_id`` added to the template context); the
mapped train and evaluate tasks expand over them (``cpt_pipeline.steps.proxy_train_kwargs``). It only renders
templates, so it runs in the Airflow worker, with no pod.
"""

from __future__ import annotations

from airflow.sdk import BaseOperator

from cpt_tasks.layout import sweep_run_id


class ProxyRunsOperator(BaseOperator):
    """``[{"fraction": f, "train": argv, "evaluate": argv}, ...]`` in increasing fraction, from the run's Param
    ``sweep_fractions`` and the steps' templates (``cpt_pipeline.steps.proxy_templates``)."""

    ui_color = "#fff3bf"

    def __init__(self, *, templates: dict[str, list[str]], **kwargs) -> None:
        super().__init__(**kwargs)
        self.templates = templates

    def execute(self, context) -> list[dict]:
        entries = []
        for fraction in sorted(set(context["params"]["sweep_fractions"])):
            run = {**context, "fraction": fraction, "proxy_run_id": sweep_run_id(context["run_id"], fraction)}
            entries.append({"fraction": fraction, **{task_id: self.render_template(argv, run)
                                                     for task_id, argv in self.templates.items()}})
            self.log.info("Proxy run %s: replay fraction %g", run["proxy_run_id"], fraction)
        return entries
