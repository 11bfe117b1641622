"""Reading ``airflow dags test``'s output as it streams, for ``make demo``: which task runs (a mapped one by its
component, not its map index), which ended how, why a gate skipped a step, why a task failed (the job's own
error lines and the exit status), and the run id.

``airflow dags test`` runs one task instance at a time in one process, so every line between a task's
``[DAG TEST] starting`` and ``[DAG TEST] end task`` lines belongs to that task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

STARTING = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
ENDED = re.compile(r"\[DAG TEST\] end task task_id=(\S+) map_index=(-?\d+)")
COMPONENT = re.compile(r"\bComponent: (\S+)")  # logged by a mapped step when it starts (pipeline.operators)
GATED = re.compile(r"\b(train|evaluate) skipped: (.+)")  # a gate's reason (cpt_pipeline.operators)
FINISHED = re.compile(r"DagRun Finished.*?run_id=([^\s,]+)")
FAILED = re.compile(r"Task failed with exception")
SKIPPED = re.compile(r"AirflowSkipException|Skipping task")
# What says why: the job's last words (cpt_tasks.cli.main), the operator's verdict on the exit status, a Param
# the DAG refused, and the last line of a Python traceback.
WHY = re.compile(r"(cpt-tasks [\w-]+: (error|bad data|failed)\b.*"
                 r"|\b(AirflowFailException|AirflowException|ParamValidationError|AirflowSkipException): .*"
                 r"|^[A-Za-z_][\w.]*(Error|Exception): .*)")
LOG_FIELDS = re.compile(r"\s+\[[a-z_.]+\]\s+.*?loc=\S+\s*$|\s+\[[A-Za-z_.]+\]\s+loc=\S+\s*$")
LOG_PREFIX = re.compile(r"^\S+Z \[\w+\s*\]\s+")
MAX_WHY = 8  # lines kept per failed task: the reason, not the whole traceback


def plain(line: str) -> str:
    """A log line without its timestamp, level and trailing logger fields."""
    return LOG_FIELDS.sub("", LOG_PREFIX.sub("", line.rstrip()))


def skip_reason(line: str) -> tuple[str, str] | None:
    """(step, whole reason) from a log line of a step its gate skipped, without the log's trailing fields."""
    found = GATED.search(line)
    if found is None:
        return None
    return found.group(1), re.sub(r"""['"]?(\s+\w+=\S+)*\s*$""", "", found.group(2))


@dataclass
class Failure:
    """A task that failed: its name (``convert[dclm]``) and the lines that say why."""

    task: str
    why: list[str] = field(default_factory=list)


@dataclass
class DagsTestLog:
    """What the lines of one ``airflow dags test`` said so far; :meth:`feed` returns the line to show, if any."""

    run_id: str | None = None
    skips: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)  # why-lines outside any task (e.g. a refused Param)
    _task: tuple[str, int] | None = None
    _label: str = ""
    _why: list[str] = field(default_factory=list)
    _failed: bool = False
    _skipped: bool = False

    def name(self) -> str:
        """The current task as the user knows it: ``plan``, ``convert[dclm]``."""
        if self._task is None:
            return ""
        task_id, map_index = self._task
        if map_index < 0:
            return task_id
        return f"{task_id}[{self._label or map_index}]"

    def feed(self, line: str) -> str | None:
        if found := STARTING.search(line):
            self._task, self._label, self._why = (found.group(1), int(found.group(2))), "", []
            self._failed = self._skipped = False
            return None
        if found := COMPONENT.search(line):
            self._label = found.group(1)
            return None
        if found := FINISHED.search(line):
            self.run_id = found.group(1)
            return f"run {self.run_id} finished"
        if gated := skip_reason(line):
            self.skips[gated[0]] = gated[1]
            return f"{gated[0]} skipped: {gated[1]}"
        if FAILED.search(line):
            self._failed = True
            return None
        self._skipped = self._skipped or bool(SKIPPED.search(line))
        if found := WHY.search(plain(line)):
            why = re.sub(r"^[\w.]+\.(?=\w+(Error|Exception): )", "", found.group(0).strip())  # no module path
            kept = self._why if self._task is not None else self.outside
            if why not in kept and len(kept) < MAX_WHY:
                kept.append(why)
            return None
        if ENDED.search(line):
            shown = f"{self.name()} {'FAILED' if self._failed else 'skipped' if self._skipped else 'done'}"
            if self._failed:
                self.failures.append(Failure(self.name(), self._why))
                shown += "".join(f"\n    {why}" for why in self._why[-2:])
            self._task = None
            return shown
        return None

    def explain(self) -> str:
        """Why the run failed, for the console: each failed task and its error lines ("" when none failed)."""
        lines = []
        for failure in self.failures:
            lines.append(f"{failure.task} failed:")
            lines += [f"  {why}" for why in failure.why] or ["  (no error line in the log; see the full log)"]
        if self.outside:
            lines.append("Airflow refused the run:" if not self.failures else "Also:")
            lines += [f"  {why}" for why in self.outside]
        return "\n".join(lines)
