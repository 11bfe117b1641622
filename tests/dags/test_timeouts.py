"""Deadlines: every task of the DAG has an execution_timeout from its Param, and a run's own value reaches the
task and stops it (Airflow's own timeout wrapper around ``execute``, which calls ``on_kill``)."""

from __future__ import annotations

import stat
import time
from collections import defaultdict
from datetime import timedelta
from types import SimpleNamespace

import pytest

from cpt_pipeline.params import step_timeouts


def sleeping_cli(tmp_path) -> tuple[str, object]:
    """A stand-in ``cpt-tasks`` that writes its pid and sleeps for a minute."""
    pid_file = tmp_path / "pid"
    script = tmp_path / "cpt-tasks"
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), pid_file


def test_every_task_has_its_deadline_param(load_dag):
    dag = load_dag("kubernetes")
    values = dag.params.validate()
    assert {task.task_id for task in dag.tasks} == set(step_timeouts()) - {"recommend"}  # the sweep's own step
    for task in dag.tasks:
        param, hours = step_timeouts()[task.task_id]
        assert task.execution_timeout == timedelta(hours=hours), task.task_id
        assert values[param] == hours
        schema = dag.params.get_param(param).schema
        assert schema["section"] == "Resources" and schema["exclusiveMinimum"] == 0
    assert values["train_timeout"] > values["convert_timeout"] > values["plan_timeout"]


def test_a_bad_deadline_is_rejected_at_trigger(load_dag):
    from airflow.sdk.definitions.param import ParamValidationError

    param = load_dag("local").params.get_param("convert_timeout")
    assert param.resolve(0.25) == 0.25
    for bad in (0, -1, "soon"):
        with pytest.raises(ParamValidationError):
            param.resolve(bad)


def test_the_runs_deadline_stops_the_task(load_dag, tmp_path):
    from airflow.sdk.exceptions import AirflowTaskTimeout
    from airflow.sdk.execution_time.task_runner import _run_execute_callable

    tasks_bin, pid_file = sleeping_cli(tmp_path)
    dag = load_dag("local", CPT_TASKS_BIN=tasks_bin)
    task = dag.get_task("plan")
    params = dict(dag.params.validate()) | {"plan_timeout": 1.5 / 3600}  # this run: 1.5 seconds
    context = {"params": params, "ti": SimpleNamespace(xcom_pull=lambda task_ids: None),
               "outlet_events": defaultdict(lambda: SimpleNamespace(extra={}))}
    task.pre_execute(context)
    assert task.execution_timeout == timedelta(seconds=1.5)
    started = time.monotonic()
    with pytest.raises(AirflowTaskTimeout):
        _run_execute_callable(context, task.execute, task)
    assert time.monotonic() - started < 10
    pid = int(pid_file.read_text())
    for _ in range(50):  # on_kill signalled the step's process group
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split()[2] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the step's process {pid} outlived its deadline")
