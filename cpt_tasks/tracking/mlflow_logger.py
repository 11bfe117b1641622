"""``cpt_mlflow``, the MLflow logger destination both jobs' worker processes use (training's YAML and the
evaluation's config name it), registered with LLM-Foundry when imported (worker side: imports Composer).

Composer's ``MLFlowLogger`` logging into the run the parent process opened (``run_id``), which turns any
tracking error into one warning and goes quiet: a tracking server that goes down never fails training or
evaluation (``cpt_tasks.tracking.mlflow_store``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from composer.core import State
from composer.loggers import MLFlowLogger
from llmfoundry.registry import loggers

from cpt_tasks.runs.log import tag


class SafeMLFlowLogger(MLFlowLogger):
    """Composer's MLflow logger, logging into ``run_id`` (the run the parent opened) when given; every tracking
    error becomes one warning on stderr and the logger goes quiet, the run goes on. It never raises before
    ``init()``'s broadcast of the run ids, or the other ranks would wait for rank 0 until ``dist_timeout``."""

    def __init__(self, run_id: str | None = None, **kwargs: Any) -> None:
        self._cpt_run_id = run_id
        self._cpt_job = (kwargs.get("tags") or {}).get("cpt.step", "train")  # the log tag: the job's own
        self._cpt_failed = False
        try:
            super().__init__(**kwargs)
        except Exception as exc:  # finding or creating the experiment (rank 0 only gets this far)
            for name, default in (("_run_id", None), ("_experiment_id", None), ("run_url", None),
                                  ("_metrics_cache", {}), ("tags", dict(kwargs.get("tags") or {})),
                                  ("run_name", kwargs.get("run_name")),
                                  ("_rank_zero_only", kwargs.get("rank_zero_only", True))):
                if not hasattr(self, name):
                    setattr(self, name, default)
            self._enabled = True  # so that _disable warns once
            self._disable("connecting", exc)

    def _disable(self, what: str, exc: BaseException) -> None:
        if self._enabled and not self._cpt_failed:
            lines = str(exc).strip().splitlines()
            print(f"{tag(self._cpt_job)} WARNING: MLflow tracking failed while {what} ({type(exc).__name__}: "
                  f"{lines[0][:300] if lines else ''}); going on without MLflow", file=sys.stderr, flush=True)
        self._cpt_failed = True
        self._enabled = False

    def _start_mlflow_run(self, state: State) -> None:
        saved = os.environ.get("MLFLOW_RUN_ID")
        try:
            if self._cpt_run_id:
                os.environ["MLFLOW_RUN_ID"] = self._cpt_run_id  # Composer logs into the run this names
            super()._start_mlflow_run(state)
        except Exception as exc:
            self._disable("starting the run", exc)
        finally:
            if saved is None:
                os.environ.pop("MLFLOW_RUN_ID", None)
            else:
                os.environ["MLFLOW_RUN_ID"] = saved

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        try:
            super().log_metrics(metrics, step)
        except Exception as exc:
            self._disable("logging metrics", exc)

    def log_hyperparameters(self, hyperparameters: dict[str, Any]) -> None:
        try:
            super().log_hyperparameters(hyperparameters)
        except Exception as exc:
            self._disable("logging parameters", exc)

    def post_close(self) -> None:
        try:
            super().post_close()
        except Exception as exc:
            self._disable("closing the run", exc)


loggers.register("cpt_mlflow", func=SafeMLFlowLogger)
