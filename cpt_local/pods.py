"""``make pods``: every pod the kubernetes runner would submit for the default Params (or for ``--conf``, a
JSON object of Params over them), as YAML in ``build/pods/`` (what a platform engineer reviews or diffs), built
by the provider's own ``build_pod_request_obj`` from the DAG's real operators, with no cluster. With ``nodes``
> 1 training is an Indexed Job (``train-job.yaml``, built by the provider's ``build_job_request_obj``); its
headless Service is the chart's (``helm/cpt-pipeline/templates/service-train-nodes.yaml``).

Run in the orchestration env: ``python -m cpt_local.pods --out build/pods [--conf '{"nodes": 2}']``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from cpt_tasks.documents.plan_docs import PlanEntry
from cpt_pipeline.settings import REPO_ROOT
from cpt_pipeline.steps import convert_kwargs
from cpt_tasks.jobs import PLAN

RUN_ID = "manual__2026-01-01T00:00:00+00:00"
# A cluster that is never contacted: the Job builder loads a kube config (JSON is YAML) to ask "in a cluster?".
OFFLINE_KUBE_CONFIG = {
    "apiVersion": "v1", "kind": "Config", "current-context": "offline",
    "clusters": [{"name": "offline", "cluster": {"server": "https://offline.invalid"}}],
    "users": [{"name": "offline", "user": {}}],
    "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
}


def load_dag(dag_file: Path = REPO_ROOT / "dags" / "cpt_dolmino.py", runner: str = "kubernetes"):
    """The DAG object, imported from its file with ``CPT_RUNNER=runner`` (kubernetes, or podman: its operators
    build the same pods)."""
    os.environ["CPT_RUNNER"] = runner
    spec = importlib.util.spec_from_file_location("cpt_dolmino_for_pods", dag_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.plan.dag


def render_pods(dag, params: dict | None = None) -> dict[str, dict]:
    """File name -> pod manifest (a JSON-ready dict) of every step, one conversion pod per subset."""
    from kubernetes.client import ApiClient

    values = dict(dag.params.validate()) | (params or {})
    env = dag.get_template_env()
    base = {"params": values, "run_id": RUN_ID, "dag": dag}
    plan_location = env.from_string(PLAN).render(**base)
    tasks = [("plan", dag.get_task("plan"), -1)]
    mapped = dag.get_task("convert")
    for index, subset in enumerate(values["subsets"]):
        entry = PlanEntry(subset=subset, plan=plan_location, plan_fingerprint="-", fingerprint="-", out_root="-",
                          max_tokens=0, val_tokens=0, dataset=values["dataset"])  # only plan and subset are used
        tasks.append((f"convert-{subset}", mapped.unmap(convert_kwargs(entry.model_dump())), index))
    tasks += [(name, dag.get_task(name), -1) for name in ("verify", "train", "evaluate")]
    client, pods = ApiClient(), {}
    with tempfile.TemporaryDirectory(prefix="cpt-pods-") as tmp:
        kube_config = Path(tmp) / "kubeconfig"
        kube_config.write_text(json.dumps(OFFLINE_KUBE_CONFIG))
        for name, task, map_index in tasks:
            ti = SimpleNamespace(dag_id=dag.dag_id, task_id=task.task_id, run_id=RUN_ID, map_index=map_index,
                                 try_number=1)
            context = {**base, "ti": ti, "task_instance": ti, "task": task}
            task.render_template_fields(context, env)
            if int(getattr(task, "nodes", 1)) > 1:
                manifest, name = task.job_manifest(context, str(kube_config)), f"{name}-job"
            else:
                manifest = task.build_pod_request_obj(context, dry_run=True)
            pods[f"{name}.yaml"] = client.sanitize_for_serialization(manifest)
    return pods


def main(argv: list[str] | None = None) -> int:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "pods", help="Folder to write")
    parser.add_argument("--conf", default="{}", help="JSON object of Params over the defaults, e.g. "
                        "'{\"nodes\": 2, \"gpus\": 8}'")
    args = parser.parse_args(argv)
    try:
        conf = json.loads(args.conf or "{}")
    except ValueError as exc:
        parser.error(f"--conf: invalid JSON: {exc}")
    if not isinstance(conf, dict):
        parser.error("--conf: expected a JSON object of Param names to values")
    dag = load_dag()
    unknown = sorted(set(conf) - set(dag.params))
    if unknown:
        parser.error(f"--conf: unknown Params: {', '.join(unknown)}")
    from airflow.sdk.exceptions import ParamValidationError

    try:
        dag.params.update(conf)
        dag.params.validate()  # the trigger form's checks: a bad value fails here, as it would there
    except ParamValidationError as exc:
        parser.error(f"--conf: {str(exc).splitlines()[0]}")
    pods = render_pods(dag)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.yaml"):
        old.unlink()
    for name, manifest in pods.items():
        (args.out / name).write_text(yaml.safe_dump(manifest, sort_keys=False))
    print(f"{len(pods)} manifests written to {args.out}: {', '.join(pods)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
