"""``make demo``: the embedded default, end to end through Airflow.

Prepares the Airflow home (SQLite, local runner, OpenLineage to a file, MLflow to a local file store), runs
``airflow dags test cpt_dolmino --conf <demo Params>`` on the bundled sample with a tiny random Llama on the
CPU, and prints what was produced where, ending with the evaluation's table (base vs trained) and the MLflow
runs. Run in the orchestration env: ``python -m cpt_local.demo``.

``--domain python`` (``make demo-domain``): continual pretraining on a corpus of your own beside the Dolmino
sample as replay: a small corpus of Python code (``cpt-samples sample --domain python``, written once under
``$CPT_HOME/sample/domain-python``), ending with what was gained on it and what was forgotten.

``--domain python --sweep`` (``make demo-sweep``): the replay sweep (``cpt_replay_sweep``) on that corpus: proxy
runs of the tiny model at three replay fractions, ending with the sweep's report (:mod:`cpt_local.sweep_demo`).

``--runner podman`` (``make demo-pods``): the same run with every step as the kubernetes runner's pod, run by
``podman kube play`` in the built tasks image (``--image``); Airflow home ``$CPT_HOME/airflow-pods``, outputs
and the submitted manifests (``pods/``) under ``$CPT_HOME/demo-pods``; tracked into ``$CPT_HOME/demo-pods/mlflow``
(inside the storage root the pods mount, so the runs outlive the pods).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cpt_local.airflow_home import cpt_home, demo_params, mlflow_store, prepare
from cpt_local.dags_test_log import DagsTestLog
from cpt_tasks.evaluate.eval_report import format_summary
from cpt_tasks.layout import EVAL_DIR, EVAL_JSON, PLAN_FILE, REPORT_JSON, REPORT_MD, REPORT_PNG, checkpoints_root, \
    run_dir, safe_run_id

DAG_ID = "cpt_dolmino"
AIRFLOW = Path(sys.executable).with_name("airflow")


def run_dags_test(env: dict, conf: dict, log_path: Path, dag_id: str = DAG_ID) -> tuple[int, DagsTestLog]:
    """``airflow dags test`` with ``conf``; full output to ``log_path``, each task's end echoed (a mapped task by
    its component, a gate's reason in full, a failure's error lines); (status, what the log said)."""
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    seen = DagsTestLog()
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(AIRFLOW), "dags", "test", dag_id, "--conf", json.dumps(conf)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            shown = seen.feed(line)
            if shown:
                print(f"  {shown}", flush=True)
        status = proc.wait()
    return status, seen


def task_states(airflow_home: Path, run_id: str, dag_id: str = DAG_ID) -> list[dict]:
    """The run's task instances (task, label of a mapped one, state) in the order they started, from Airflow's
    REST API (:mod:`cpt_local.airflow_api`)."""
    from cpt_local.airflow_api import query_api

    (found,) = query_api(airflow_home, (f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", {"order_by": "start_date"}))
    return [{"task_id": ti["task_id"], "map_index": ti["map_index"],
             "label": ti["rendered_map_index"] or ("" if ti["map_index"] < 0 else str(ti["map_index"])),
             "state": ti["state"]} for ti in found["task_instances"]]


def summarize(storage_root: Path, run_id: str, states: list[dict], skips: dict[str, str] | None = None) -> str:
    """What the run produced where: tasks, data, verification, checkpoint, lineage. Training and evaluation that
    did not run in this run (``states``) are shown as an earlier run's, with ``skips``' reasons."""
    from cpt_tasks.documents import find_document
    from cpt_tasks.documents.verify_docs import VerifyReport
    from cpt_tasks.runs.status import find_finished_run

    folder = Path(run_dir(str(storage_root), DAG_ID, safe_run_id(run_id)))
    lines = [f"Run {run_id}", "", *task_lines(states, skips)]
    ran = {s["task_id"]: s["state"] for s in states if s["map_index"] < 0}
    if (folder / PLAN_FILE).is_file():  # never a path that was not written (a failed plan writes none)
        lines += ["", f"Plan:          {folder / PLAN_FILE}"]
    finished = evaluation = None
    report = find_document(str(folder / REPORT_JSON), VerifyReport)
    if report is not None:
        lines.append(f"Verification:  {'PASSED' if report.ok else 'FAILED'}  {folder / REPORT_MD}, "
                     f"{folder / REPORT_PNG}")
        lines.append("Data (MDS):")
        width = max(len(s.name) for s in report.subsets)
        for s in report.subsets:  # a repeated component: unique tokens × epochs = the tokens training draws
            repeated = f" × {s.epochs:.2f} epochs = {s.trained:,} trained" if s.epochs != 1 else ""
            lines.append(f"  {s.name:<{width}} {s.train_tokens:>9,} train{repeated} + {s.val_tokens:>7,} val tokens  "
                         f"{s.out_root}" + ("  (domain)" if s.role == "domain" else ""))
        finished = find_finished_run(checkpoints_root(str(storage_root)), report.plan.fingerprint)
        if finished is not None:
            lines += [f"Training{_earlier('train', ran, f'run {finished.run_name}, finished {finished.finished_at}')}:",
                      f"  run folder    {finished.run_folder}",
                      f"  final step    {finished.final_step}",
                      f"  run manifest  {finished.run_manifest}",
                      f"  HF export     {finished.hf_export}",
                      f"  loss curve    {Path(finished.run_folder) / 'loss.png'}"]
            evaluation = latest_evaluation(finished.run_folder)
    events = storage_root / "openlineage" / "events.jsonl"
    if events.exists():
        count = sum(1 for _ in events.open())
        lines.append(f"Lineage:       {count} OpenLineage events in {events}")
    if finished is not None:
        lines += ["", *_tracking_lines(finished.run_manifest, evaluation)]
    if evaluation is not None:
        earlier = _earlier("evaluate", ran, f"made {evaluation.created_at}")
        lines += ["", f"Evaluation (did continual pretraining help?){earlier}: {evaluation.files['markdown']}, "
                  f"{evaluation.files['png']}", format_summary(evaluation)]
    return "\n".join(lines)


def task_lines(states: list[dict], skips: dict[str, str] | None = None) -> list[str]:
    """The run's tasks, one line each (a mapped one with its label), and why a gate skipped a step."""
    lines = ["Tasks:"]
    task_width = max((len(s["task_id"]) for s in states), default=8)
    label_width = max((len(s["label"]) for s in states), default=0)
    for s in states:
        lines.append(f"  {s['task_id']:<{task_width}} {s['label']:<{label_width}} {s['state']}")
    for step, reason in (skips or {}).items():
        lines.append(f"  {step} skipped: {reason}")
    return lines


def _earlier(step: str, ran: dict[str, str], which: str) -> str:
    """" (from an earlier run ...)" when a section shows what ``step`` made in an earlier run (it did not succeed
    in this one; ``ran``: this run's step -> state, empty when unknown), else ""."""
    if not ran or ran.get(step) == "success":
        return ""
    return f" (from an earlier run, {which}; {step} was {ran.get(step, 'not run')} in this one)"


def latest_evaluation(run_folder: str):
    """The newest evaluation report of a training run (None: not evaluated)."""
    from cpt_tasks.documents import find_document
    from cpt_tasks.documents.evaluate_docs import EvalReport

    found = [find_document(str(p), EvalReport) for p in Path(run_folder, EVAL_DIR).glob(f"*/{EVAL_JSON}")]
    return max((r for r in found if r is not None), key=lambda r: r.created_at, default=None)


def _tracking_lines(run_manifest: str, evaluation) -> list[str]:
    """Where the MLflow runs of train and evaluate are (``make mlflow`` serves the links)."""
    from cpt_tasks.documents import find_document
    from cpt_tasks.documents.train_docs import RunManifest

    manifest = find_document(run_manifest, RunManifest)
    runs = {"train": manifest.mlflow if manifest else None, "evaluate": evaluation.mlflow if evaluation else None}
    store = next((run.tracking_uri for run in runs.values() if run is not None and run.run_url), "")
    serve = "make mlflow"  # serves the local demo's store; another file store (demo-pods') is named
    if store.startswith("file://") and store != mlflow_store(cpt_home()):
        serve += f" MLFLOW_STORE={store.removeprefix('file://')}"
    lines = [f"MLflow runs ({serve}, then open):"]
    for step, run in runs.items():
        if run is not None:
            where = run.run_url or f"{run.status}{': ' + run.error if run.error else ''}"
            lines.append(f"  {step:<9} {where}" + (f"  ({run.tracking_uri})" if run.run_url else ""))
    return lines


# The domain demo: 3/4 of the total is the code corpus, the replay keeps the default demo's 350,000 tokens.
DOMAIN_DEMO = {"total_tokens": 1_400_000, "domain_text_field": "content", "domain_name": "python-code",
               "replay_fraction": 0.25}


def domain_params(home: Path, kind: str) -> dict:
    """The domain demo's Params: the corpus (``make setup`` writes it with the tasks env) and a total that keeps
    the replay's budgets."""
    corpus = home / "sample" / f"domain-{kind}"
    if not (corpus / ".complete").is_file():
        raise SystemExit(f"the {kind} corpus is not in {corpus}: `make demo-domain` writes it first "
                         f"(or: .venv/bin/cpt-samples sample --domain {kind} --out {corpus})")
    return {**DOMAIN_DEMO, "domain": str(corpus)}


def check_conf(conf: dict, storage_root: str, shape=None) -> None:
    """Exit 2 naming what is wrong when ``conf`` has a name that is no Param of the DAG (with the closest one) or
    a value its Param refuses, before Airflow starts: the run would go on with the default, or fail later."""
    from airflow.sdk.definitions.param import ParamsDict

    from cpt_pipeline.params import build_params, unknown_options, unknown_params

    from cpt_pipeline.dag_shapes import DOLMINO

    params = build_params(storage_root, shape=shape or DOLMINO)
    problem = unknown_params(conf, params) or unknown_options(conf, {n: p.schema for n, p in params.items()})
    if problem:
        print(f"make demo: {problem}", file=sys.stderr)
        raise SystemExit(2)
    try:
        checked = ParamsDict(params)
        checked.update(conf)
        checked.validate()
    except Exception as exc:  # ParamValidationError: its first line says which Param and why
        print(f"make demo: {str(exc).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(2) from None


def podman_environment(home: Path, image: str) -> dict[str, str]:
    """The Airflow environment of ``--runner podman``: its own Airflow home and storage root, the image, and a
    storage root the pods' user may write (the runner's pods run as uid 1000)."""
    from cpt_pipeline.runners import UID

    proc = subprocess.run(["podman", "image", "exists", image], capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"image {image} not found: build it with `make images` (podman)")
    storage_root = home / "demo-pods"
    store = storage_root / "mlflow"  # under the storage root, which the pods mount: their runs outlive them
    env = prepare(home, home / "airflow-pods", storage_root, tracking=f"file://{store}")
    store.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        for path in (storage_root, store):
            os.chown(path, UID, UID)
    # `make setup` writes the tiny model's weights owner-only (0600): the pods read the inputs as another user.
    for name in ("sample", "tokenizer", "models"):
        subprocess.run(["chmod", "-R", "a+rX", str(home / name)], check=True)
    return env | {"CPT_RUNNER": "podman", "CPT_TASKS_IMAGE": image, "CPT_PODMAN_DIR": str(storage_root)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default="{}", help="JSON Params to change on top of the demo's")
    parser.add_argument("--runner", choices=("local", "podman"), default="local",
                        help="local: processes with the tasks env; podman: the Kubernetes pods, with podman")
    parser.add_argument("--image", default="localhost/cpt-tasks:dev", help="tasks image of --runner podman")
    parser.add_argument("--domain", choices=("python",), default=None,
                        help="Continual pretraining on a small corpus of your own (python: the stdlib's code) with "
                        "the sample as replay")
    parser.add_argument("--sweep", action="store_true",
                        help="The replay sweep (cpt_replay_sweep) on the --domain corpus: proxy runs of the tiny "
                        "model at three replay fractions, and the recommendation")
    parser.add_argument("--dry_run", "--dry-run", action="store_true",
                        help="Set up and check the Params, print the command, run nothing")
    args = parser.parse_args(argv)
    try:
        changes = json.loads(args.conf)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"make demo: CONF is not JSON ({exc}): {args.conf}") from None
    if not isinstance(changes, dict):
        raise SystemExit(f"make demo: CONF must be a JSON object of Params, not {args.conf}")
    home = cpt_home()
    env = {**os.environ, **(podman_environment(home, args.image) if args.runner == "podman" else prepare(home))}
    conf = demo_params(home, Path(env["CPT_STORAGE_ROOT"]))
    conf |= (domain_params(home, args.domain) if args.domain else {})
    dag_id, shape = DAG_ID, None
    if args.sweep:
        from cpt_local.sweep_demo import SHAPE, sweep_conf

        if not args.domain:
            raise SystemExit("make demo-sweep: the sweep needs a corpus of your own (--domain python)")
        dag_id, shape, conf = SHAPE.dag_id, SHAPE, sweep_conf(conf)
    conf |= changes
    check_conf(conf, env["CPT_STORAGE_ROOT"], shape)
    storage_root = Path(conf["storage_root"])
    log_path = storage_root / "logs" / f"dags-test-{time.strftime('%Y%m%dT%H%M%S')}.log"
    if args.dry_run:
        print(f"would run: airflow dags test {dag_id} --conf '{json.dumps(conf)}' (Airflow home "
              f"{env['AIRFLOW_HOME']}); the Params are valid")
        return 0
    print(f"airflow dags test {dag_id} (Airflow home {env['AIRFLOW_HOME']}; full log {log_path})")
    started = time.time()
    status, seen = run_dags_test(env, conf, log_path, dag_id)
    print(f"\n{'succeeded' if status == 0 else 'FAILED'} in {time.time() - started:.0f}s\n")
    if status != 0:
        print((seen.explain() or "no task failed; the reason is in the full log") + f"\nFull log: {log_path}\n")
    if seen.run_id:
        states = task_states(Path(env['AIRFLOW_HOME']), seen.run_id, dag_id)
        if args.sweep:
            from cpt_local.sweep_demo import summarize_sweep

            print(summarize_sweep(storage_root, seen.run_id, task_lines(states, seen.skips)))
        else:
            print(summarize(storage_root, seen.run_id, states, seen.skips))
    return status


if __name__ == "__main__":
    sys.exit(main())
