"""The one logging helper: a job's lines on stderr under its own tag, and only where ``when`` holds."""

from __future__ import annotations

from cpt_tasks.runs.log import say, teller


def test_a_job_says_under_its_own_tag_on_stderr(capsys):
    say("verify", "ok")
    teller("train")("step 4")
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == ["[cpt-verify] ok", "[cpt-train] step 4"]


def test_a_teller_with_a_condition_says_only_where_it_holds(capsys):
    rank = {"value": 1}
    say_rank0 = teller("train", when=lambda: rank["value"] == 0)
    say_rank0("from rank 1")
    rank["value"] = 0
    say_rank0("from rank 0")
    assert capsys.readouterr().err.splitlines() == ["[cpt-train] from rank 0"]
