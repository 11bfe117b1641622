"""The make targets the README and docs give, run as a user runs them: every one exists, and the demos' entry
points run in the environment the Makefile runs them in, up to their first real step (``DEMO_ARGS=--dry_run``:
set up, prepare the Airflow home, check the Params, run nothing). A demo that crashed on import in its own
environment (``make demo-domain`` once did, on a module its environment lacks) fails here, in seconds."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
MAKE_COMMAND = re.compile(r"`(?:[A-Z_]+=\S+ )*make ([a-z][a-z0-9-]*)")  # `make demo …`, `CPT_HOME=… make demo`
DEMOS = ("demo", "demo-domain", "demo-sweep")


def named_targets() -> dict[str, list[str]]:
    """make target -> the documents that name it in a command."""
    named: dict[str, list[str]] = {}
    for path in DOCUMENTS:
        for target in MAKE_COMMAND.findall(path.read_text()):
            named.setdefault(target, []).append(path.name)
    return named


def make(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_documents_name_the_demos_and_the_tests():
    named = named_targets()
    assert {"demo", "demo-domain", "test"} <= set(named), sorted(named)


@pytest.mark.parametrize("target", sorted(named_targets()))
def test_every_make_target_the_documents_name_exists(target):
    proc = make("-n", target)  # -n: what it would run, nothing run
    assert proc.returncode == 0, f"`make {target}` ({', '.join(named_targets()[target])}): {proc.stderr}"


@pytest.mark.parametrize("target", DEMOS)
def test_each_demo_runs_in_its_own_environment_up_to_its_first_real_step(target):
    proc = make(target, "DEMO_ARGS=--dry_run")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dag = "cpt_replay_sweep" if target == "demo-sweep" else "cpt_dolmino"
    found = re.search(rf"would run: airflow dags test {dag} --conf '(.*)' \(Airflow home", proc.stdout)
    assert found, proc.stdout[-3000:]
    conf = json.loads(found.group(1))
    if target == "demo-sweep":  # the sweep's Params: the tiny proxy, three fractions, none of the big run's
        assert conf["sweep_fractions"] == [0, 0.25, 0.5] and conf["proxy_model"].endswith("tiny-llama"), conf
        assert not {"total_tokens", "model", "replay_fraction"} & set(conf), conf
    if target in ("demo-domain", "demo-sweep"):  # the corpus exists, whole, where the conf says
        assert conf["domain_text_field"] == "content" and (Path(conf["domain"]) / ".complete").is_file(), conf
        assert sorted(p.name for p in Path(conf["domain"]).glob("*.jsonl")), conf["domain"]
    else:
        assert "domain" not in conf, conf


@pytest.mark.parametrize(("conf", "said"), [
    ('{"domian": "/x"}', "unknown Param 'domian' (did you mean 'domain'?)"),
    ('{"total_tokens": 1000, "replay_fractoin": 0.5}', "unknown Param 'replay_fractoin' (did you mean "
                                                       "'replay_fraction'?)"),
    ('{"total_tokens": -5}', "total_tokens"),
    ('{"train_options": {"lrr": 0.1}}', "train_options: unknown option 'lrr' (did you mean 'lr'?)"),
    ('[1, 2]', "CONF must be a JSON object"),
    ('{"total_tokens": ', "CONF is not JSON"),
])
def test_a_demo_refuses_a_conf_it_cannot_take_naming_what_is_wrong(conf, said):
    proc = make("demo", f"CONF={conf}", "DEMO_ARGS=--dry_run")
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert said in proc.stderr, proc.stderr[-2000:]
    assert "would run" not in proc.stdout
