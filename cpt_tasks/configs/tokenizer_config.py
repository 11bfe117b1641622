"""``TokenizerConfig``: the inputs of ``cpt-tasks tokenizer`` (light core)."""

from __future__ import annotations

from pydantic import Field

from cpt_tasks.configs.config_base import StrictModel


class TokenizerConfig(StrictModel):
    """Arguments of ``cpt-tasks tokenizer``."""

    out: str = Field(min_length=1, description="Folder to write")
