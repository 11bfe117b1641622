"""The tasks image, from inside running containers under the pods' security context: uid 1000, read-only root
filesystem, no capabilities; the training stack imports; `cpt-tasks convert` writes the same bytes as in .venv;
no build tools, caches or uv; the build's CA bundle in no layer."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from containers import AIRFLOW_IMAGE, ROOT, TASKS_IMAGE, podman, run_in

pytestmark = pytest.mark.images

PROBE = """
import json, os
try:
    open("/probe", "w")
    rootfs = "writable"
except OSError as exc:
    rootfs = exc.strerror
root_mount = next(line.split()[3] for line in open("/proc/mounts") if line.split()[1] == "/")
caps = {k: v.strip() for k, v in (l.split(":", 1) for l in open("/proc/self/status")) if k.startswith("Cap")}
writable = {}
for path in ("/tmp", "/cache", "/home/cpt", "/opt/venv", "/etc"):
    try:
        open(os.path.join(path, ".probe"), "w").close()
        writable[path] = True
    except OSError:
        writable[path] = False
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "rootfs": rootfs, "root_mount": root_mount,
                  "caps": caps, "writable": writable, "no_new_privs": open("/proc/self/status").read().count("NoNewPrivs:\\t1")}))
"""


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_runs_as_uid_1000_on_a_read_only_root_without_capabilities():
    probe = last_json(run_in(TASKS_IMAGE, "python", "-c", PROBE))
    assert (probe["uid"], probe["gid"]) == (1000, 1000)  # the image's own user: no --user given
    assert probe["rootfs"] == "Read-only file system" and probe["root_mount"].split(",")[0] == "ro"
    assert probe["writable"] == {"/tmp": True, "/cache": True, "/home/cpt": False, "/opt/venv": False, "/etc": False}
    assert set(probe["caps"].values()) == {"0000000000000000"} and probe["no_new_privs"] == 1


def test_the_probe_can_see_a_writable_root():
    """The same probe without --read-only reports it: the read-only result above is the container's, not the probe's."""
    probe = last_json(run_in(TASKS_IMAGE, "python", "-c", PROBE, pod_like=False))
    assert probe["rootfs"] == "writable" or probe["rootfs"] == "Permission denied"  # / is root's: uid 1000 may not
    assert probe["root_mount"].split(",")[0] == "rw"


def test_training_stack_imports_under_the_pod_security_context():
    code = ("import llmfoundry, composer, streaming, git, matplotlib.pyplot as plt, torch, transformers, cpt_tasks.cli; "
            "import matplotlib, json, os; plt.figure(); "
            "print(json.dumps({'llmfoundry': llmfoundry.__version__, 'composer': composer.__version__, "
            "'streaming': streaming.__version__, 'torch': torch.__version__, 'mpl': matplotlib.get_configdir()}))")
    versions = last_json(run_in(TASKS_IMAGE, "python", "-c", code))
    lock = (ROOT / "requirements" / "tasks.lock.txt").read_text()
    assert f"llm-foundry=={versions['llmfoundry']}" in lock and f"mosaicml=={versions['composer']}" in lock
    assert f"mosaicml-streaming=={versions['streaming']}" in lock and f"torch=={versions['torch'].split('+')[0]}" in lock
    assert versions["mpl"].startswith("/cache/")


def test_without_the_fixes_the_import_fails():
    """What the image's GIT_PYTHON_REFRESH=quiet prevents: GitPython refuses to import without a git binary."""
    proc = run_in(TASKS_IMAGE, "python", "-c", "import git", env={"GIT_PYTHON_REFRESH": "raise"})
    assert proc.returncode != 0 and "Bad git executable" in proc.stderr


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_convert_in_the_image_writes_the_same_bytes_as_in_venv(tmp_path, sample_dir, tokenizer_dir):
    args = ["convert", "--dataset", str(sample_dir), "--data_subset", "wiki", "--tokenizer", str(tokenizer_dir),
            "--concat_tokens", "256", "--max_tokens", "40000", "--val_tokens", "2048", "--shuffle", "--seed", "5",
            "--num_workers", "2"]
    host_out, image_out = tmp_path / "venv", tmp_path / "image"
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "cpt-tasks"), *args, "--out_root", str(host_out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    image_out.mkdir()
    os.chown(image_out, 1000, 1000)
    proc = run_in(TASKS_IMAGE, "cpt-tasks", *args, "--out_root", str(image_out),
                  volumes=(f"{sample_dir}:{sample_dir}:ro", f"{tokenizer_dir}:{tokenizer_dir}:ro",
                           f"{image_out}:{image_out}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    host, image = tree_digest(host_out), tree_digest(image_out)
    shards = {k for k in host if k.startswith(("train/", "val/"))}
    assert shards and {k for k in image if k.startswith(("train/", "val/"))} == shards
    assert {k: image[k] for k in shards} == {k: host[k] for k in shards}
    host_manifest = json.loads((host_out / "manifest.json").read_text())
    image_manifest = json.loads((image_out / "manifest.json").read_text())
    assert image_manifest["fingerprint"] == host_manifest["fingerprint"]
    assert image_manifest["splits"] == host_manifest["splits"] and host_manifest["splits"]["train"]["samples"] > 100
    assert image_manifest["code_version"] == host_manifest["code_version"]


def test_no_build_tools_caches_or_uv():
    """Nothing of the build stays: no uv, compilers, make or git on the PATH; no pip/uv caches, wheels, sdists or
    source tree where the build ran (the base's own files, like Debian's bundled ensurepip wheels, are not ours)."""
    script = ("for t in uv uvx gcc cc c++ g++ make git ld as; do command -v $t && echo FOUND $t; done; "
              "python -c 'import uv' 2>/dev/null && echo FOUND python-uv; "
              "for d in /root/.cache /home/cpt/.cache /src /opt/app /tmp/uv /tmp/tasks.lock.txt; do "
              "[ -e $d ] && echo FOUND $d; done; "
              "find /opt /root /home /tmp /usr/local /var/cache -xdev -type f \\( -name '*.whl' -o -name 'uv' "
              "-o -name 'uvx' -o -name '*.deb' -o -path '*/pip/http*' \\) 2>/dev/null | sed 's/^/FOUND /'; "
              "ls -A /tmp | sed 's/^/FOUND leftover in tmp: /'; "
              "ls -A /var/lib/apt/lists | grep -v -x -E 'partial|lock|auxfiles' | sed 's/^/FOUND apt list /'; "
              "ls /opt/venv/lib/python3.11/site-packages | grep -i -E '^(uv|pip|setuptools_scm|build)(-|$)' | sed 's/^/FOUND /'; "
              "echo done")
    proc = run_in(TASKS_IMAGE, "sh", "-c", script, pod_like=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("done"), proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("FOUND")] == []


def test_the_no_tools_check_can_fail():
    proc = run_in(TASKS_IMAGE, "sh", "-c", "command -v python && echo FOUND python")
    assert "FOUND python" in proc.stdout


def layer_dirs(image: str) -> list[Path]:
    """The folder of every layer of ``image`` in podman's overlay storage (each layer's own files)."""
    proc = podman("image", "inspect", "--format", "{{.GraphDriver.Data.LowerDir}}:{{.GraphDriver.Data.UpperDir}}", image)
    assert proc.returncode == 0, proc.stderr
    dirs = [Path(d) for d in proc.stdout.strip().split(":") if d and d != "<no value>"]
    assert dirs and all(d.is_dir() for d in dirs), dirs
    return dirs


BUNDLE = Path(os.environ.get("CA_BUNDLE") or "/etc/ssl/certs/ca-certificates.crt")


def certificates(data: bytes) -> set[bytes]:
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    return {begin + chunk.split(end)[0] + end for chunk in data.split(begin)[1:] if end in chunk}


def public_roots() -> set[bytes]:
    """The public root certificates: the machine's ca-certificates sources and certifi's Mozilla bundle."""
    import certifi

    roots = certificates(Path(certifi.where()).read_bytes())
    for path in Path("/usr/share/ca-certificates").rglob("*.crt"):
        roots |= certificates(path.read_bytes())
    return roots


@pytest.mark.parametrize("image", [TASKS_IMAGE, AIRFLOW_IMAGE])
def test_the_build_ca_bundle_is_in_no_layer(image):
    """The builds mount $(CA_BUNDLE) as a secret. Its certificates that are no public root (a proxy's or
    company's CA: here the machine's own additions) must appear in no file of any layer, no file may be left in
    /run/secrets, and the bundle file itself may be nowhere."""
    assert BUNDLE.exists(), f"{BUNDLE}: the CA bundle the build used"
    bundle = BUNDLE.read_bytes()
    private = certificates(bundle) - public_roots()
    digest = hashlib.sha256(bundle).hexdigest()
    checked = 0
    for layer in layer_dirs(image):
        secrets = layer / "run" / "secrets"  # the build leaves the empty mount point, never a file in it
        assert not (secrets.is_dir() and list(secrets.rglob("*"))), list(secrets.rglob("*"))
        for path in layer.rglob("*"):
            if path.is_symlink() or not path.is_file() or path.stat().st_size > 5_000_000:
                continue
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() != digest, path
            if b"-----BEGIN CERTIFICATE-----" in data:
                checked += 1
                assert not (certificates(data) & private), path
    assert checked  # the image's own bundles (ca-certificates, certifi) were looked at
