"""Lint and render the chart with the real Helm library and validate what it renders; runs in .venv-airflow.

The tests run in the tasks env (.venv), which has neither Helm nor kubernetes-validate, so they start this
script with the Airflow env's interpreter. Helm is Helm v4's Go SDK through ``helm-python-sdk`` (libhelm_c):
``helm lint`` and ``helm template`` offline, values schema included. Input: a JSON request on stdin,
``{"chart": DIR, "kube_versions": [...], "jobs": [{"id", "values_files", "values", "release", "namespace"}],
"validate": [objects]}``. Output: per job id the lint report, the rendered objects (each with its template and
its kubernetes-validate errors per Kubernetes version), NOTES.txt, or the render error; under "validate" the
errors of each given object.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml


def merge_values(base: dict, override: dict) -> dict:
    """Helm's merge of successive -f files: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = value
    return out


def load_values(job: dict) -> dict:
    """The user values of a job: its values files in order, then its inline values."""
    values: dict = {}
    for path in job.get("values_files", []):
        values = merge_values(values, yaml.safe_load(Path(path).read_text()) or {})
    return merge_values(values, job.get("values") or {})


def validate_object(obj: dict, versions: list[str]) -> dict[str, str]:
    """kubernetes-validate (strict: unknown fields are errors) per Kubernetes version; {} when valid."""
    errors = {}
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            errors[version] = str(getattr(exc, "message", exc))
    return errors


def run_job(chart: helm.Chart, chart_dir: str, job: dict, versions: list[str]) -> dict:
    """Lint (strict) and render one set of values; validate every rendered object."""
    values = load_values(job)
    result: dict = {"lint": helm.lint(chart_dir, values, strict=True, namespace=job["namespace"],
                                      kube_version=versions[0])}
    try:
        rendered = chart.render(values, name=job["release"], namespace=job["namespace"], is_install=True)
    except helm.HelmError as exc:
        result["render_error"] = f"{type(exc).__name__}: {exc}"
        return result
    objects = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            result["notes"] = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append({"template": template, "object": doc,
                                "schema_errors": validate_object(doc, versions)})
    result["objects"] = objects
    return result


def main() -> int:
    request = json.load(sys.stdin)
    helm.disable_logging()
    chart = helm.Chart.load(request["chart"])
    versions = request["kube_versions"]
    out = {job["id"]: run_job(chart, request["chart"], job, versions) for job in request["jobs"]}
    out["validate"] = [validate_object(obj, versions) for obj in request.get("validate", [])]
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
