"""What a step brings to its operator besides its command: the gate that may skip it and the step whose result
the gate reads, the metadata of its Assets' events, and its OpenLineage inputs and outputs. A
:class:`~cpt_pipeline.steps.Step` carries one; the operators only call what it holds, so they know no task
id (no Airflow import here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Gate = Callable[[dict, dict | None], str | None]  # (params, upstream result) -> why the step is skipped, or None
Pairs = list[tuple[str, str]]  # OpenLineage datasets as (namespace, name)
Extras = Callable[[dict], dict[str, dict]]  # the step's result -> Asset name -> its event's metadata
Lineage = Callable[[dict, dict | None], tuple[Pairs, Pairs]]  # (result, upstream result) -> (inputs, outputs)


@dataclass(frozen=True)
class Wiring:
    """A step's gate, its gate's input step, its Asset metadata and its lineage (all optional)."""

    gate: Gate | None = None
    upstream: str | None = None  # the task id whose result (XCom) the gate and the lineage read
    extras: Extras | None = None
    lineage: Lineage | None = None
