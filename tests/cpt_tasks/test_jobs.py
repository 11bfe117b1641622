"""The registry (``cpt_tasks.jobs``): every job's CLI command comes from its entry, and a made-up job needs only
its own module and one entry to be a command with its flags, ``--dry-run``, ``--config`` and a result for the DAG
(tests/dags/test_params.py adds the same job to the DAG's Params and steps)."""

from __future__ import annotations

import json
import sys

import pytest

from cpt_tasks import cli, jobs
from cpt_tasks.jobs import JOBS, Job, expression

MADE_UP = '''
"""A made-up job for the registry's test: counts the words of a text."""
from pydantic import Field

from cpt_tasks.configs.config_base import StrictModel
from cpt_tasks.documents import Document
from cpt_tasks.jobs import Outcome


class CountConfig(StrictModel):
    text: str = Field(description="The text whose words are counted")
    minimum: int = Field(1, ge=0, description="Exit 3 below this many words")


class CountResult(Document):
    FORMAT = "cpt-pipeline/count-result/v1"
    KIND = "a word count"

    words: int


def command(cfg: CountConfig) -> Outcome:
    words = len(cfg.text.split())
    print(f"{words} words")
    return Outcome(CountResult(words=words), 0 if words >= cfg.minimum else 3)
'''


@pytest.fixture
def made_up_job(tmp_path, monkeypatch):
    """The job's own folder (here one module on sys.path) and one registry entry; nothing else is touched."""
    (tmp_path / "count_job.py").write_text(MADE_UP)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("count_job", None)
    import count_job

    entry = Job("count", "Count the words of a text", count_job.CountConfig, count_job.CountResult,
                "count_job:command")
    monkeypatch.setattr(jobs, "JOBS", (*JOBS, entry))
    monkeypatch.setattr(cli, "JOBS", jobs.JOBS)
    yield entry
    sys.modules.pop("count_job", None)


def test_a_made_up_job_is_a_command_with_its_flags_and_result(made_up_job, tmp_path, monkeypatch, capsys):
    result = tmp_path / "result.json"
    monkeypatch.setenv("CPT_RESULT_FILE", str(result))
    assert cli.main(["count", "--text", "three little words"]) == 0
    assert "3 words" in capsys.readouterr().out
    assert json.loads(result.read_text()) == {"format": "cpt-pipeline/count-result/v1", "words": 3}
    assert cli.main(["count", "--config", '{"text": "one", "minimum": 2}']) == 3  # the job's own exit status
    capsys.readouterr()
    assert cli.main(["count", "--text", "a b", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == {"text": "a b", "minimum": 1}
    assert cli.main(["count", "--text", "a", "--minimum", "-1"]) == 2  # the config's bounds, as for every job
    with pytest.raises(SystemExit):
        cli.main(["count", "--txt", "a"])
    assert "did you mean --text?" in capsys.readouterr().err


def test_every_job_is_a_command_with_every_field_as_a_flag():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict)).choices
    assert list(commands) == [j.name for j in JOBS]
    for job in JOBS:
        flags = {o for a in commands[job.name]._actions for o in a.option_strings}
        assert {f"--{name}" for name in job.config.model_fields} | {"--config", "--dry-run"} <= flags, job.name
        module, _, function = job.run.partition(":")
        assert function and module.startswith("cpt_tasks."), job.run


def test_a_step_s_config_is_one_object_of_the_fields_the_run_sets():
    train = jobs.job("train")
    template = train.config_template()
    assert template.startswith("{{ dict(params.train_options, ") and template.endswith(") | tojson }}")
    assert "max_duration=params.max_duration" in template and "nnodes=params.nodes" in template
    assert set(train.option_fields()) & train.fields_set_by_the_dag() == set()
    assert set(train.option_fields()) | train.fields_set_by_the_dag() == set(train.config.model_fields)
    assert jobs.step_job("convert").name == "convert-subset"


def test_a_template_becomes_one_expression_of_the_same_value():
    assert expression("{{ params.convert_cpu }}") == "(params.convert_cpu)"
    assert expression("{{ a }}/runs/{{ b | f }}/plan.json") == "(a) ~ '/runs/' ~ (b | f) ~ '/plan.json'"
    assert expression("plain") == "'plain'"
