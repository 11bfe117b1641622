"""``cpt-tasks evaluate``: did continual pretraining help? The base model and the trained one, evaluated alike
with LLM-Foundry's harness on the plan's held-out data and ICL tasks; a report beside the run's checkpoints.

Its config is ``cpt_tasks.configs.evaluate_config``; ``run.evaluate`` is the job (``inputs``, ``tasks``, ``foundry_yaml`` and
``report`` its parts); ``worker`` runs inside the evaluation process.
"""
