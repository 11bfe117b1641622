"""The verify job: check every planned subset's output against the plan before any GPU is spent."""

from cpt_tasks.verify.config import VerifyConfig

__all__ = ["VerifyConfig"]
