"""The Dolmino mix (OLMo 2's proportions) and per-subset token budgets derived from one total.

Light core: no heavy imports, so the DAG and the demo can use it. Budgets follow the reference table:
max_tokens = proportion × total_tokens, val_tokens = max_tokens × val_fraction (rounded to whole tokens).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

DOLMINO_MIX: dict[str, float] = {
    "dclm": 0.472,
    "flan": 0.166,
    "pes2o": 0.0585,
    "wiki": 0.0711,
    "stackexchange": 0.0245,
    "math": 0.208,
}
DEFAULT_TOTAL_TOKENS = 50_000_000_000
DEFAULT_VAL_FRACTION = 0.0002


def _whole(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def subset_budgets(total_tokens: int, val_fraction: float = DEFAULT_VAL_FRACTION,
                   mix: dict[str, float] | None = None) -> dict[str, tuple[int, int]]:
    """{subset: (max_tokens, val_tokens)}, computed in decimal so 0.472 × 50e9 is exactly 23.6e9."""
    result = {}
    for name, proportion in (mix or DOLMINO_MIX).items():
        max_tokens = _whole(Decimal(str(proportion)) * Decimal(total_tokens))
        result[name] = (max_tokens, _whole(Decimal(max_tokens) * Decimal(str(val_fraction))))
    return result
