"""Shared pieces of the jobs' typed configs: a strict base model and human-friendly token counts.

Every job config derives from ``StrictModel``: unknown keys are errors, values are validated when the
config is built, and each field's ``description`` is its one-line doc (the CLI's --help shows it).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict


class StrictModel(BaseModel):
    """A config: unknown keys rejected, validated on construction and assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_token_count(value: object) -> object:
    """Accept 23600000000, "23_600_000_000", "23.6e9" or 2.36e10 for an integral token count."""
    if isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return value  # let pydantic report the bad value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value} is not a whole number of tokens")
        return int(value)
    return value


TokenCount = Annotated[int, BeforeValidator(parse_token_count)]
"""A non-fractional number of tokens, written plainly or in scientific notation."""
