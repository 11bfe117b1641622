"""``cpt-tasks evaluate``: did continual pretraining help? The base model and the trained one, evaluated alike
with LLM-Foundry's harness on the plan's held-out data and ICL tasks; a report beside the run's checkpoints.

Its config is ``cpt_tasks.configs.evaluate_config``; ``evaluate_job.evaluate`` is the job (``eval_inputs``,
``tasks``, ``eval_yaml`` and ``eval_report`` its parts); ``eval_worker`` runs inside the evaluation process.
"""
