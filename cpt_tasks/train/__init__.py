"""``cpt-tasks train``: continual pretraining with LLM-Foundry on a verified mix, resumable on retry.

``config`` and ``status`` are light core (no torch); ``run.train`` is the job; ``worker`` and ``components``
run inside the training processes.
"""

from cpt_tasks.train.config import TrainConfig

__all__ = ["TrainConfig"]
