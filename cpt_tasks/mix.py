"""Mixes: named, versioned subset proportions (shipped as JSON in ``cpt_tasks/mixes/``), and the per-subset
token budgets derived from one total.

Light core: no heavy imports, so the DAG can use it. Budgets follow the reference table: max_tokens =
proportion × total_tokens and val_tokens = max_tokens × val_fraction, in decimal arithmetic and rounded
half-to-even to whole tokens, so 0.472 × 50e9 is exactly 23,600,000,000.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from cpt_tasks.errors import UserError

MIX_DIR = Path(__file__).parent / "mixes"
DEFAULT_MIX = "dolmino-mix-1124"
DEFAULT_TOTAL_TOKENS = 50_000_000_000
DEFAULT_VAL_FRACTION = 0.0002
SUM_TOLERANCE = 0.001


@dataclass(frozen=True)
class Mix:
    """A mix: its name and version, the dataset it describes, and subset -> proportion (summing to 1)."""

    name: str
    version: int
    dataset: str | None
    proportions: dict[str, float]


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
    if not isinstance(data, dict) or not isinstance(data.get("proportions"), dict):
        raise UserError(f"{path}: a mix needs a 'proportions' object of subset -> proportion")
    try:
        mix = Mix(name=str(data.get("name", path.stem)), version=int(data.get("version", 1)),
                  dataset=data.get("dataset"), proportions={k: float(v) for k, v in data["proportions"].items()})
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: 'version' must be an integer and proportions numbers ({exc})") from None
    check_proportions(mix.proportions, f"--mix {name_or_path}")
    return mix


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
                   proportions: dict[str, float] | None = None) -> dict[str, tuple[int, int]]:
    """{subset: (max_tokens, val_tokens)} for a total and proportions (default: the Dolmino mix)."""
    result = {}
    for name, proportion in (proportions or load_mix(DEFAULT_MIX).proportions).items():
        max_tokens = _whole(Decimal(str(proportion)) * Decimal(total_tokens))
        result[name] = (max_tokens, val_budget(max_tokens, val_fraction))
    return result
