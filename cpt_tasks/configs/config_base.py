"""Shared pieces of the jobs' typed configs: a strict base model, human-friendly token counts and byte sizes,
and a config written back as command-line flags.

Every job config derives from ``StrictModel``: unknown keys are errors, values are validated when the
config is built, and each field's ``description`` is its one-line doc (the CLI's --help shows it).
"""

from __future__ import annotations

import json
import types
import typing
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict


class StrictModel(BaseModel):
    """A config: unknown keys rejected, validated on construction and assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_size(text: str | int) -> int:
    """'64mb' / '100KB' / '64MiB' / 1048576 -> bytes (binary units, as streaming reads them)."""
    if isinstance(text, int):
        return text
    value = text.strip().lower().replace("ib", "b")
    for suffix, factor in (("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("b", 1)):
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)


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


def is_list(annotation: object) -> bool:
    """A list type, or an optional one."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(is_list(a) for a in typing.get_args(annotation))
    return typing.get_origin(annotation) is list


def is_dict(annotation: object) -> bool:
    """A dict type, or an optional one."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(is_dict(a) for a in typing.get_args(annotation))
    return typing.get_origin(annotation) is dict


def config_argv(cfg: BaseModel) -> list[str]:
    """The flags that ``cpt_tasks.cli_args.build_config`` turns back into ``cfg``: every field that differs from
    its default, written as ``add_model_arguments`` defines it (a command line to show or copy, e.g. a plan's)."""
    argv: list[str] = []
    plain = cfg.model_dump(mode="json")
    for name, field in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        if not field.is_required() and value == field.get_default(call_default_factory=True):
            continue
        if field.annotation is bool:
            argv.append(f"--{name}" if value else f"--no-{name}")
        elif value is None:
            raise ValueError(f"{name}: None differs from the default and has no flag")
        elif is_list(field.annotation):
            argv += [f"--{name}", *map(str, value)]
        elif is_dict(field.annotation):
            argv += [f"--{name}", json.dumps(plain[name])]
        else:
            argv += [f"--{name}", str(value)]
    return argv
