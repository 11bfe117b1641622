"""The shared security rules (tests/security_rules.py): a clean pod passes, and each rule fails on the manifest
that breaks it, so a chart or DAG test that finds no violation means something."""

from __future__ import annotations

import copy

import pytest
from security_rules import check_objects, check_pod_spec, check_rbac


def good_pod() -> dict:
    """A pod that follows every rule: the shape the chart's test pod and the DAG's pods have."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "convert-dclm", "namespace": "cpt"},
        "spec": {
            "serviceAccountName": "cpt-convert",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "base", "image": "ghcr.io/cpt-pipeline/cpt-tasks:0.1.0",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                "env": [{"name": "CPT_CACHE_DIR", "value": "/cache/cpt"},
                        {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
                        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {
                            "name": "cpt-object-storage", "key": "AWS_SECRET_ACCESS_KEY"}}}],
                "envFrom": [{"secretRef": {"name": "cpt-hf-token"}}],
            }],
            "volumes": [{"name": "cache", "ephemeral": {}}],
        },
    }


def container(pod: dict) -> dict:
    return pod["spec"]["containers"][0]


BREAKS = {
    "runAsNonRoot": lambda p: p["spec"]["securityContext"].pop("runAsNonRoot"),
    "runAsUser is 0": lambda p: container(p)["securityContext"].update(runAsUser=0),
    "seccompProfile": lambda p: p["spec"]["securityContext"].pop("seccompProfile"),
    "seccompProfile is Unconfined": lambda p: container(p)["securityContext"].update(
        seccompProfile={"type": "Unconfined"}),
    "allowPrivilegeEscalation": lambda p: container(p)["securityContext"].pop("allowPrivilegeEscalation"),
    "privileged": lambda p: container(p)["securityContext"].update(privileged=True),
    "drop ALL": lambda p: container(p)["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
    "adds capabilities": lambda p: container(p)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
    "hostNetwork": lambda p: p["spec"].update(hostNetwork=True),
    "hostPID": lambda p: p["spec"].update(hostPID=True),
    "hostPath": lambda p: p["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/var/run"}}),
    "HF_TOKEN holds a credential as a literal": lambda p: container(p)["env"].append(
        {"name": "HF_TOKEN", "value": "not-a-real-token"}),
    "credential-looking literal": lambda p: container(p)["env"].append(
        {"name": "OPTS", "value": "--key " + "AKIA" + "IOSFODNN7EXAMPLE"}),
    "does not come from a secretKeyRef": lambda p: container(p)["env"].append(
        {"name": "WANDB_API_KEY", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}),
    "initContainer": lambda p: p["spec"].update(initContainers=[{"name": "init", "image": "busybox:1.36"}]),
}


def test_clean_pod_passes():
    assert check_pod_spec(good_pod()) == []


@pytest.mark.parametrize("expected", list(BREAKS))
def test_each_pod_rule_fails_on_a_bad_manifest(expected):
    pod = good_pod()
    BREAKS[expected](pod)
    violations = check_pod_spec(pod)
    assert any(expected in v for v in violations), violations


def test_rules_apply_to_workload_pod_templates_and_bare_specs():
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"template": {"spec": copy.deepcopy(good_pod()["spec"])}}}
    assert check_pod_spec(job) == []
    job["spec"]["template"]["spec"]["hostIPC"] = True
    assert any("hostIPC" in v for v in check_pod_spec(job))
    bare = copy.deepcopy(good_pod()["spec"])
    container({"spec": bare})["securityContext"]["privileged"] = True
    assert any("privileged" in v for v in check_pod_spec(bare))
    assert check_pod_spec({"kind": "ConfigMap", "data": {}}) == []


def launcher_role() -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "pod-launcher", "namespace": "cpt"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch"]}]}


def test_rbac_rules():
    binding = {"kind": "RoleBinding", "metadata": {"name": "b", "namespace": "cpt"},
               "roleRef": {"kind": "Role", "name": "pod-launcher"}}
    assert check_rbac([launcher_role(), binding]) == []
    cases = {
        "verbs ['*']": lambda r: r["rules"][0].update(verbs=["*"]),
        "verbs ['escalate']": lambda r: r["rules"][0].update(verbs=["get", "escalate"]),
        "wildcard resources": lambda r: r["rules"][0].update(resources=["*"]),
        "wildcard resources or apiGroups": lambda r: r["rules"][0].update(apiGroups=["*"]),
        "access to Secrets": lambda r: r["rules"][0].update(resources=["pods", "secrets"]),
        "Role without a namespace": lambda r: r["metadata"].pop("namespace"),
        "cluster-wide RBAC": lambda r: r.update(kind="ClusterRole"),
    }
    for expected, breaker in cases.items():
        role = launcher_role()
        breaker(role)
        assert any(expected in v for v in check_rbac([role])), expected
    cluster_binding = dict(binding, roleRef={"kind": "ClusterRole", "name": "edit"})
    assert any("not a namespaced Role" in v for v in check_rbac([cluster_binding]))


def test_check_objects_flags_inline_secrets_and_host_volumes():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"HF_TOKEN": "x"}}
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"},
          "spec": {"hostPath": {"path": "/data"}}}
    violations = check_objects([good_pod(), launcher_role(), secret, pv])
    assert len(violations) == 2 and "inline values" in violations[0] and "hostPath" in violations[1]
