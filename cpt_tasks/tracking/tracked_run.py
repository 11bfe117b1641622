"""The tracked-run context: whatever goes wrong inside it, the MLflow run is finished FAILED before the error
goes on (a retry opens the same run again by its name)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cpt_tasks.documents.train_docs import MlflowRun
from cpt_tasks.tracking.mlflow_store import Tracker


@contextmanager
def failing_run(tracker: Tracker | None, run: MlflowRun) -> Iterator[None]:
    """Finish ``run`` FAILED on any exception raised inside (nothing when not tracked)."""
    try:
        yield
    except BaseException:
        if tracker is not None:
            tracker.finish(run, "FAILED")
        raise
