"""Mixes: named, versioned subset proportions (shipped as JSON in ``cpt_tasks/mixes/``), and the per-subset
token budgets derived from one total.

A mix file holds either ``proportions`` (subsets of one ``dataset``, like the shipped Dolmino mix) or
``components``: each names its own source (``dataset``, ``subset``, ``text_field``), its ``proportion`` and its
``role`` (``replay``: general data that counters forgetting; ``domain``: the corpus being learned).

Light core: no heavy imports, so the DAG can use it. Budgets follow the reference table: max_tokens =
proportion × total_tokens and val_tokens = max_tokens × val_fraction, in decimal arithmetic and rounded
half-to-even to whole tokens, so 0.472 × 50e9 is exactly 23,600,000,000.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from cpt_tasks.errors import UserError

MIX_DIR = Path(__file__).parent / "mixes"
DEFAULT_MIX = "dolmino-mix-1124"
DEFAULT_TOTAL_TOKENS = 50_000_000_000
DEFAULT_VAL_FRACTION = 0.0002
SUM_TOLERANCE = 0.001


ROLES = ("replay", "domain")


@dataclass(frozen=True)
class ComponentSource:
    """Where one component of a multi-source mix comes from, and what it is for."""

    dataset: str
    subset: str | None = None
    text_field: str | None = None  # None: the plan's text_field
    role: str = "replay"


@dataclass(frozen=True)
class Mix:
    """A mix: its name and version, the dataset it describes, and subset -> proportion (summing to 1);
    ``sources`` names each component's own source (empty: every subset is one of ``dataset``)."""

    name: str
    version: int
    dataset: str | None
    proportions: dict[str, float]
    sources: dict[str, ComponentSource] = field(default_factory=dict)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise UserError(f"duplicate subsets: {', '.join(dupes)}")
    return dict(pairs)


def parse_json_strict(text: str, where: str) -> object:
    """json.loads that rejects duplicate keys (a silently dropped subset is a wrong mix)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        raise UserError(f"{where}: invalid JSON: {exc}") from None


def available_mixes() -> list[str]:
    """Names of the mixes shipped with the package."""
    return sorted(p.stem for p in MIX_DIR.glob("*.json"))


def load_mix(name_or_path: str) -> Mix:
    """A shipped mix by name, or a mix JSON file by path; validated."""
    path = Path(name_or_path)
    if not path.is_file():
        path = MIX_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise UserError(f"--mix {name_or_path}: no such mix file or shipped mix "
                            f"(shipped: {', '.join(available_mixes())})")
    data = parse_json_strict(path.read_text(), str(path))
    if isinstance(data, dict) and isinstance(data.get("components"), dict) and "proportions" not in data:
        data = dict(data, proportions={k: v.get("proportion") if isinstance(v, dict) else None
                                       for k, v in data["components"].items()})
        sources = {name: read_component(path, name, spec) for name, spec in data["components"].items()}
    else:
        sources = {}
    if not isinstance(data, dict) or not isinstance(data.get("proportions"), dict):
        raise UserError(f"{path}: a mix needs a 'proportions' object of subset -> proportion, or a 'components' "
                        "object of name -> {dataset, subset, text_field, proportion, role}")
    try:
        mix = Mix(name=str(data.get("name", path.stem)), version=int(data.get("version", 1)),
                  dataset=data.get("dataset"), proportions={k: float(v) for k, v in data["proportions"].items()},
                  sources=sources)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: 'version' must be an integer and proportions numbers ({exc})") from None
    check_proportions(mix.proportions, f"--mix {name_or_path}")
    return mix


def read_component(path: Path, name: str, spec: object) -> ComponentSource:
    """One component of a multi-source mix file; UserError naming the file and the component."""
    where = f"{path}: component {name}"
    if not isinstance(spec, dict):
        raise UserError(f"{where}: expected an object with dataset, proportion (and subset, text_field, role)")
    unknown = sorted(set(spec) - {"dataset", "subset", "text_field", "proportion", "role"})
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}")
    dataset, subset, text_field = spec.get("dataset"), spec.get("subset"), spec.get("text_field")
    if not isinstance(dataset, str) or not dataset:
        raise UserError(f"{where}: 'dataset' (a local path, object-storage prefix or hub id) is required")
    for key, value in (("subset", subset), ("text_field", text_field)):
        if value is not None and (not isinstance(value, str) or not value):
            raise UserError(f"{where}: '{key}' must be a non-empty string")
    role = spec.get("role", "replay")
    if role not in ROLES:
        raise UserError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
    return ComponentSource(dataset=dataset, subset=subset, text_field=text_field, role=role)


def check_proportions(proportions: dict[str, float], where: str) -> None:
    """Proportions must be positive and sum to 1 within ±0.001."""
    if not proportions:
        raise UserError(f"{where}: no subsets")
    bad = [k for k, v in proportions.items() if not 0 < v <= 1]
    if bad:
        raise UserError(f"{where}: proportions must be in (0, 1]; bad: {', '.join(bad)}")
    total = sum(proportions.values())
    if abs(total - 1) > SUM_TOLERANCE:
        raise UserError(f"{where}: proportions sum to {total:.6g}, not 1 (±{SUM_TOLERANCE})")


def _whole(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def val_budget(max_tokens: int, val_fraction: float) -> int:
    """val_tokens for a train budget: max_tokens × val_fraction, rounded half-to-even."""
    return _whole(Decimal(max_tokens) * Decimal(str(val_fraction)))


def subset_budgets(total_tokens: int, val_fraction: float = DEFAULT_VAL_FRACTION,
                   proportions: dict[str, float] | None = None,
                   share: float | None = None) -> dict[str, tuple[int, int]]:
    """{subset: (max_tokens, val_tokens)} for a total and proportions (default: the Dolmino mix); ``share``
    (e.g. the replay fraction beside a domain corpus) scales the total first, exactly: share × total × p."""
    scaled = Decimal(total_tokens) * (Decimal(1) if share is None else Decimal(str(share)))
    result = {}
    for name, proportion in (proportions or load_mix(DEFAULT_MIX).proportions).items():
        max_tokens = _whole(Decimal(str(proportion)) * scaled)
        result[name] = (max_tokens, val_budget(max_tokens, val_fraction))
    return result


def domain_budget(total_tokens: int, replay_fraction: float, val_fraction: float) -> tuple[int, int]:
    """(max_tokens, val_tokens) of a domain corpus beside a replay mix: (1 − replay_fraction) × total."""
    max_tokens = _whole((1 - Decimal(str(replay_fraction))) * Decimal(total_tokens))
    return max_tokens, val_budget(max_tokens, val_fraction)
