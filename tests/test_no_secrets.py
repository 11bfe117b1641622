"""No secret values in the repository (code, DAG and Params, Dockerfiles, chart, values files) nor in what the
chart renders: detect-secrets with every default plugin plus a Hugging Face token detector. The few findings
that are not secrets are listed below by file, kind and hash (a changed value is flagged again)."""

from __future__ import annotations

import json
import subprocess

from airflow_env import ROOT, TOOLS, run_python_tool, run_tool

NOT_SECRETS = {
    # the published sha256 of Meta's Llama 3 tokenizer.model and of its tokenizer.json (integrity checks)
    ("cpt_tasks/tokenizer.py", "Hex High Entropy String",
     "2ddd024e91ee76a1a4e8dac1742d4cc3e6c77194"),  # pragma: allowlist secret
    ("cpt_tasks/tokenizer.py", "Hex High Entropy String",
     "511b418f320ffc65162da1cddab5f7a0946c6f6f"),  # pragma: allowlist secret
    # the moto test server's dummy credential "testing" on 127.0.0.1 (and the storage tests' fault servers')
    ("tests/conftest.py", "Secret Keyword", "dc724af18fbdd4e59189f5fe768a5f8311527050"),  # pragma: allowlist secret
    ("tests/cpt_tasks/test_storage.py", "Secret Keyword",
     "dc724af18fbdd4e59189f5fe768a5f8311527050"),  # pragma: allowlist secret
    # the local test Hub's made-up commit id (tests/hub_server.py, HubRepo.commit)
    ("tests/hub_server.py", "Hex High Entropy String",
     "158b484ae1f6f64f89da22397d25fbdafad02252"),  # pragma: allowlist secret
}


def scan(files: list[str], cwd=ROOT) -> list[tuple[str, str, str]]:
    """(file, kind, hashed secret) of every finding of detect-secrets in the files (paths relative to cwd)."""
    proc = run_tool("detect-secrets", "scan", "--all-files", "--plugin", str(TOOLS / "hf_token_plugin.py"), *files,
                    cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    return sorted((name, r["type"], r["hashed_secret"]) for name, found in results.items() for r in found)


def repo_files() -> list[str]:
    """Every file git would commit: tracked plus untracked-but-not-ignored."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return sorted(f for f in out.split("\0") if f and (ROOT / f).is_file())


def test_repository_holds_no_secret_values():
    files = repo_files()
    assert {"docker/tasks/Dockerfile", "docker/airflow/Dockerfile", "helm/cpt-pipeline/values.yaml",
            "helm/cpt-pipeline/values-airflow.yaml", "helm/cpt-pipeline/templates/configmap.yaml"} <= set(files)
    findings = [f for f in scan(files) if f not in NOT_SECRETS]
    assert findings == []


def test_rendered_chart_holds_no_secret_values(tmp_path):
    chart = ROOT / "helm" / "cpt-pipeline"
    jobs = [{"id": "default", "release": "cpt-pipeline", "namespace": "cpt"},
            {"id": "all", "release": "cpt-pipeline", "namespace": "cpt",
             "values_files": [str(chart / "ci" / "all-features-values.yaml")]}]
    out = run_python_tool("helm_tool.py", stdin=json.dumps({"chart": str(chart), "kube_versions": ["1.37.0"],
                                                             "jobs": jobs}))
    for job in ("default", "all"):
        (tmp_path / f"{job}.json").write_text(json.dumps([o["object"] for o in out[job]["objects"]], indent=1))
    assert scan(["default.json", "all.json"], cwd=tmp_path) == []


def test_scan_finds_planted_secrets(tmp_path):
    """The scanner is live: an AWS key id, a Hugging Face token and a password in a values file are found."""
    aws, hf = "AKIA" + "IOSFODNN7EXAMPLE", "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567"
    password = "password: 'pA55-w0rd-Xq9z'"  # pragma: allowlist secret
    (tmp_path / "values.yaml").write_text(f"env:\n  key: {aws}\n  hf: {hf}\n{password}\n")
    kinds = {kind for _, kind, _ in scan(["values.yaml"], cwd=tmp_path)}
    assert {"AWS Access Key", "Hugging Face Token", "Secret Keyword"} <= kinds
