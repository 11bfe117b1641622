"""The podman runner (``CPT_RUNNER=podman``): each step runs the very pod the kubernetes runner would submit,
in the built tasks image, on this machine with ``podman kube play``.

The pod comes from the provider's own ``build_pod_request_obj`` on the same operator options as
``CPT_RUNNER=kubernetes`` and ``make pods`` (:func:`cpt_pipeline.runners.pod_options`); then
:func:`adapt_pod` changes only what podman cannot take or what does not exist on one machine, each change
written into the manifest it submits (kept in ``CPT_PODMAN_DIR``):

1. The XCom sidecar (an ``alpine`` image, not available offline) is dropped; ``/airflow/xcom`` becomes a
   hostPath folder per pod that the runner reads ``return.json`` from after the container exits.
2. Local paths among the Params (``storage_root`` read-write; ``dataset``, ``tokenizer``, ``model``
   read-only) are mounted as hostPath volumes at the same paths, so plan and report paths mean the same inside
   and out. Object-storage locations (``s3://`` ...) and hub ids are left alone.
3. Environment taken from Secrets (``secretKeyRef``: object-storage keys, ``HF_TOKEN``) is dropped: the
   Kubernetes Secrets do not exist here, every reference is optional in the pods, and the local run needs no
   credentials. (A reference that is not optional makes the runner fail rather than run without it.)
4. ``/dev/shm``'s memory-backed emptyDir is dropped: podman 4.3 makes it a root-owned disk folder the pod's
   user cannot write; podman's own ``/dev/shm`` (a tmpfs, 64 MB) takes its place.

Everything else is submitted as built: the security context (uid 1000, read-only root filesystem, all
capabilities dropped, no privilege escalation, RuntimeDefault seccomp), the /tmp and /cache emptyDirs, CPU and
memory limits, the image, command, arguments and environment. Podman ignores what has no meaning on one
machine (namespace, service account, node selector, tolerations). Pods run with ``--network none``.

Success (exit 0) and "already complete" (99) remove the pod; any other exit keeps it, with its logs, for
``podman logs`` / ``podman pod inspect``. Tested rootful (as root, like CI): the pod's uid 1000 must be able
to write the storage root, which the runner creates for it when missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from cpt_tasks.errors import EXIT_ALREADY_COMPLETE
from cpt_pipeline.operators import StepPodOperator, exit_status_error

SIDECAR = "airflow-xcom-sidecar"
XCOM_VOLUME = "xcom"
WRITABLE_PARAMS = ("storage_root",)
READ_ONLY_PARAMS = ("dataset", "tokenizer", "model")
REMOVED_EXITS = (0, EXIT_ALREADY_COMPLETE)  # exits after which the pod is removed (any other keeps it)


def local_path(value: object) -> str | None:
    """``value`` as an absolute local path, or None (object storage, a hub id, empty)."""
    text = str(value or "")
    return os.path.normpath(text) if text.startswith("/") else None


def host_mounts(params: dict) -> list[tuple[str, bool]]:
    """(path, read_only) of the Params' local paths, outer paths first (a read-only input inside the storage root
    is mounted over it, narrowing it); a path named twice is mounted once, writable if storage_root is it."""
    mounts: dict[str, bool] = {}
    for name in WRITABLE_PARAMS + READ_ONLY_PARAMS:
        path = local_path(params.get(name))
        if path and path not in mounts:
            mounts[path] = name in READ_ONLY_PARAMS
    return sorted(mounts.items(), key=lambda item: (item[0].count("/"), item[0]))


def _volume_name(index: int, path: str) -> str:
    tail = "".join(ch if ch.isalnum() else "-" for ch in Path(path).name.lower()).strip("-")[:40]
    return f"host-{index}-{tail or 'root'}"


def adapt_pod(pod: dict, *, xcom_dir: str, mounts: list[tuple[str, bool]]) -> tuple[dict, list[str]]:
    """The podman form of a Kubernetes pod manifest (a JSON-ready dict, not modified) and what was changed.
    See the module docstring for the four adaptations."""
    pod = json.loads(json.dumps(pod))
    spec = pod["spec"]
    changes: list[str] = []
    if any(c["name"] == SIDECAR for c in spec["containers"]):
        spec["containers"] = [c for c in spec["containers"] if c["name"] != SIDECAR]
        changes.append(f"dropped the XCom sidecar container {SIDECAR} (its image is not available offline)")
    (container,) = spec["containers"]
    for volume in spec.get("volumes") or []:
        if volume["name"] == XCOM_VOLUME:
            volume.pop("emptyDir", None)
            volume["hostPath"] = {"path": xcom_dir, "type": "Directory"}
            changes.append(f"/airflow/xcom is the hostPath {xcom_dir} (the runner reads return.json there)")
    shm = {v["name"] for v in spec.get("volumes") or [] if (v.get("emptyDir") or {}).get("medium") == "Memory"}
    if shm:
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] not in shm]
        container["volumeMounts"] = [m for m in container.get("volumeMounts") or [] if m["name"] not in shm]
        changes.append("dropped the memory-backed emptyDir on /dev/shm (podman's own /dev/shm tmpfs serves)")
    for index, (path, read_only) in enumerate(mounts):
        name = _volume_name(index, path)
        spec.setdefault("volumes", []).append({"name": name, "hostPath": {"path": path, "type": "Directory"}})
        mount = {"name": name, "mountPath": path}
        if read_only:
            mount["readOnly"] = True
        container.setdefault("volumeMounts", []).append(mount)
        changes.append(f"hostPath {path} mounted at the same path ({'read-only' if read_only else 'read-write'})")
    kept = []
    for var in container.get("env") or []:
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            kept.append(var)
            continue
        if not ref.get("optional"):
            raise ValueError(f"env {var['name']} needs Secret {ref.get('name')!r} (not optional): "
                             "the podman runner has no Kubernetes Secrets")
        changes.append(f"dropped env {var['name']} (optional secretKeyRef {ref.get('name')}/{ref.get('key')}: "
                       "no Kubernetes Secrets here)")
    container["env"] = kept
    return pod, changes


def manifest_text(pod: dict, changes: list[str]) -> str:
    """The submitted manifest as YAML, headed by the list of adaptations."""
    head = ["# Submitted by the cpt-pipeline podman runner (podman kube play --network none).",
            "# Built by KubernetesPodOperator.build_pod_request_obj, as for Kubernetes, then adapted:"]
    head += [f"#   - {change}" for change in changes]
    return "\n".join(head) + "\n" + yaml.safe_dump(pod, sort_keys=False)


def podman(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run ``podman ARGS`` (with the caller's CONTAINERS_CONF); text output captured unless redirected."""
    kwargs.setdefault("capture_output", True)
    proc = subprocess.run(["podman", *args], text=True, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... exited {proc.returncode}: {(proc.stderr or '').strip()}")
    return proc


def give_to(path: Path, uid: int, gid: int) -> None:
    """Create ``path`` (and missing parents) owned by the pod's user, so the pod can write it; an existing
    folder that user cannot write is an error naming the fix."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return  # rootless podman maps the pod's uid elsewhere: not checked here
    for created in missing:
        os.chown(created, uid, gid)
    info = path.stat()
    if info.st_uid != uid and not info.st_mode & 0o002:
        raise PermissionError(f"{path}: the pods run as uid {uid} and cannot write this folder (owner uid "
                              f"{info.st_uid}): chown {uid}:{gid} {path}")


def unreadable(path: Path, uid: int, gid: int, most: int = 5) -> list[str]:
    """Files and folders under ``path`` that the pod's user could not read (or enter), at most ``most``."""

    def readable(info: os.stat_result, bits: int) -> bool:
        if info.st_uid == uid:
            return info.st_mode & (bits << 6) == bits << 6
        if info.st_gid == gid:
            return info.st_mode & (bits << 3) == bits << 3
        return info.st_mode & bits == bits

    bad = []
    for folder, dirs, files in os.walk(path):
        if not readable(os.stat(folder), 0o5):
            bad.append(folder)
            dirs.clear()
        bad += [os.path.join(folder, f) for f in files if not readable(os.stat(os.path.join(folder, f)), 0o4)]
        if len(bad) >= most:
            break
    return bad[:most]


class PodmanStepOperator(StepPodOperator):
    """Run the step's Kubernetes pod with ``podman kube play`` (see the module docstring)."""

    template_fields = (*StepPodOperator.template_fields, "nodes")
    ui_color = "#fff0e6"

    def __init__(self, *, podman_dir: str, nodes: int | str = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.podman_dir = podman_dir
        self.nodes = nodes
        self._pod_name: str | None = None

    def execute(self, context):
        self._check_gate(context)
        if int(self.nodes) > 1:
            raise AirflowFailException(f"nodes = {self.nodes}: the podman runner runs one pod per step; train on "
                                       "several nodes with CPT_RUNNER=kubernetes (an Indexed Job) or local")
        from kubernetes.client import ApiClient

        pod = ApiClient().sanitize_for_serialization(self.build_pod_request_obj(context, dry_run=True))
        name = pod["metadata"]["name"]
        security = pod["spec"].get("securityContext") or {}
        uid, gid = int(security.get("runAsUser", 0)), int(security.get("runAsGroup", security.get("runAsUser", 0)))
        folder = Path(self.podman_dir)
        xcom_dir = folder / "xcom" / name
        mounts = host_mounts(context["params"])
        try:
            give_to(xcom_dir, uid, gid)
            for path, read_only in mounts:
                if not read_only:
                    give_to(Path(path), uid, gid)
                elif os.geteuid() == 0 and (bad := unreadable(Path(path), uid, gid)):
                    raise PermissionError(f"the pods run as uid {uid} and cannot read {', '.join(bad)}: "
                                          f"chmod -R a+rX {path}")
        except PermissionError as exc:
            raise AirflowFailException(str(exc)) from None
        adapted, changes = adapt_pod(pod, xcom_dir=str(xcom_dir), mounts=mounts)
        manifest = folder / "pods" / f"{name}.yaml"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(manifest_text(adapted, changes))
        for change in changes:
            self.log.info("podman adaptation: %s", change)
        self.log.info("podman kube play --network none %s (image %s)", manifest, adapted["spec"]["containers"][0]["image"])
        podman("kube", "play", "--network", "none", str(manifest))
        self._pod_name = name
        code = self._follow(f"{name}-{self.base_container_name}")
        what = f"pod {name}"
        if code in REMOVED_EXITS:
            podman("pod", "rm", "--force", name, check=False)
            self._pod_name = None
        else:
            self.log.info("pod %s kept for inspection: podman logs %s-%s; podman pod rm -f %s", name, name,
                          self.base_container_name, name)
        if code != 0:
            raise exit_status_error(code, what)
        result_file = xcom_dir / "return.json"
        result = json.loads(result_file.read_text()) if result_file.exists() else None
        shutil.rmtree(xcom_dir, ignore_errors=True)
        return self._record(context, result)

    def _follow(self, container: str) -> int:
        """Stream the container's log into the task log until it exits; its exit code."""
        with subprocess.Popen(["podman", "logs", "--follow", container], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, bufsize=1) as logs:
            for line in logs.stdout:
                self.log.info("%s", line.rstrip())
        # `logs --follow` ends when the container stops; `wait` returns its exit code (at once if it has).
        for _ in range(30):
            proc = podman("wait", container, check=False)
            if proc.returncode == 0 and proc.stdout.strip().lstrip("-").isdigit():
                return int(proc.stdout.strip())
            if podman("container", "exists", container, check=False).returncode != 0:
                raise AirflowException(f"{container} was removed before it exited (the task was killed?)")
            time.sleep(2)
        raise AirflowException(f"podman wait {container}: {proc.stderr.strip()}")

    def on_kill(self) -> None:
        if self._pod_name:
            grace = str(self.termination_grace_period or 10)
            podman("pod", "stop", "--time", grace, self._pod_name, check=False)
            podman("pod", "rm", "--force", self._pod_name, check=False)
            self._pod_name = None
