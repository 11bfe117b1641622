"""Build argparse options from a config model, so each flag is defined once (in the model).

Every field becomes ``--<name>`` (LLM-Foundry's ``--name_with_underscores``, and ``--name-with-dashes`` as
well) with the field's description as help and its default shown once; required fields are marked and lead
the usage line; booleans get ``--x/--no-x``; lists take several values. Defaults stay in the model: only flags actually given reach it. ``--config``
takes a YAML/JSON file of the same keys, or an inline JSON object (what the DAG passes from a Param); unknown
keys are errors; flags override it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from cpt_tasks.configs.config_base import is_dict, is_list
from cpt_tasks.errors import UserError
from cpt_tasks.mix import parse_json_strict


class HelpFormatter(argparse.HelpFormatter):
    """Every spelling of an option, then its value once: ``--out_root, --out-root OUT_ROOT``."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=40, width=110)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return f"{', '.join(action.option_strings)} {value}"


def flags(name: str) -> list[str]:
    """The option strings of a parameter: ``--name_with_underscores`` and ``--name-with-dashes``."""
    spellings = [f"--{name}", f"--{name.replace('_', '-')}", f"--{name.replace('-', '_')}"]
    return list(dict.fromkeys(spellings))


def _help(field: FieldInfo) -> str:
    """The field's description, with its default once (not when the description already states it); a '%' stays
    a '%' (argparse formats help strings)."""
    text = (field.description or "").replace("%", "%%")
    if field.is_required():
        return f"Required. {text}"
    if field.default_factory is not None:  # worked out where the job runs: the description says how
        return text
    default = field.get_default()
    if default not in (None, [], "") and "default" not in text.lower():
        text += f" (default: {default})"
    return text


def add_model_arguments(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """Add one option per model field, plus --config and --dry-run; the usage line names the required ones."""
    parser.add_argument("--config", help="YAML/JSON file, or an inline JSON object, with these options "
                        "(flags override it)")
    parser.add_argument(*flags("dry-run"), dest="dry_run", action="store_true",
                        help="Print the validated config as JSON and exit")
    required = []
    for name, field in model.model_fields.items():
        kwargs: dict = {"dest": name, "default": argparse.SUPPRESS, "help": _help(field)}
        if field.annotation is bool:
            parser.add_argument(*flags(name), action=argparse.BooleanOptionalAction, **kwargs)
        elif is_list(field.annotation):
            parser.add_argument(*flags(name), nargs="+", metavar="VALUE", **kwargs)
        elif is_dict(field.annotation):
            parser.add_argument(*flags(name), metavar="JSON", **kwargs)
        else:
            parser.add_argument(*flags(name), metavar=name.upper(), **kwargs)
        if field.is_required():
            required.append(f"--{name} {name.upper()}")
    parser.usage = " ".join(["%(prog)s", *required, "[options]"])
    parser.formatter_class = HelpFormatter


def build_config(model: type[BaseModel], args: argparse.Namespace) -> BaseModel:
    """The validated config from --config and the flags given; UserError naming the bad parameter."""
    values: dict = {}
    if getattr(args, "config", None):
        values.update(_load_file(args.config))
    for key, value in vars(args).items():
        if key in model.model_fields:
            if isinstance(value, str) and is_dict(model.model_fields[key].annotation):
                value = parse_json_strict(value, f"--{key}")
            values[key] = value
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(
            (f"--{'.'.join(str(p) for p in err['loc'])}: " if err["loc"] else "") + err["msg"]
            for err in exc.errors()
        )
        raise UserError(f"invalid arguments: {problems}") from None


def _load_file(value: str) -> dict:
    if value.lstrip().startswith("{"):
        return _expect_mapping(parse_json_strict(value, "--config"), "--config")
    path = Path(value)
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(str(exc)) from None
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"--config {path}: {exc}") from None
    return _expect_mapping(data, f"--config {path}")


def _expect_mapping(data: object, where: str) -> dict:
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of option names to values")
    return data
