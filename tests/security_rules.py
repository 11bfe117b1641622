"""Security rules for Kubernetes manifests, shared by the chart's tests and the DAG's pod-manifest tests.

Plain functions over manifest dicts (standard library only, so either environment can import them):
``check_pod_spec(manifest)`` for a Pod, a pod spec or any workload with a pod template, ``check_rbac(objs)``
for RBAC objects, ``check_objects(objs)`` for a whole rendered set. Each returns human-readable violations,
``[]`` when the manifest is clean. The pod rules are the Pod Security Standard "restricted" profile plus
"no credential as a literal env value".
"""

from __future__ import annotations

import re

WORKLOAD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template", "spec"), "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"), "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"), "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "PodTemplate": ("template", "spec"),
}
# Env names that hold credentials: they must come from a Secret (valueFrom.secretKeyRef or envFrom).
CREDENTIAL_ENV = re.compile(r"(^|_)(TOKEN|PASSWORD|PASSWD|API_KEY|APIKEY|SECRET_KEY|SECRET_ACCESS_KEY|ACCESS_KEY_ID|"
                            r"SESSION_TOKEN|PRIVATE_KEY|CLIENT_SECRET|CREDENTIALS_JSON)$")
# Literal values that are credentials whatever the variable is called.
CREDENTIAL_VALUE = re.compile(r"(A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA)[A-Z0-9]{16}|"  # AWS key id
                              r"\bhf_[A-Za-z0-9]{30,}|"  # Hugging Face token
                              r"\bgh[pousr]_[A-Za-z0-9]{36,}|"  # GitHub token
                              r"-----BEGIN [A-Z ]*PRIVATE KEY-----|"
                              r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.")  # JWT
ALLOWED_CAPABILITIES = {"NET_BIND_SERVICE"}  # the only one the restricted profile lets a container add
DANGEROUS_VERBS = {"*", "escalate", "bind", "impersonate"}


def pod_spec_of(manifest: dict) -> dict | None:
    """The pod spec inside a Pod, a workload with a pod template, or a bare pod spec; None for other kinds."""
    kind = manifest.get("kind")
    if kind == "Pod":
        return manifest.get("spec") or {}
    if kind in WORKLOAD_TEMPLATE_PATHS:
        node = manifest
        for key in WORKLOAD_TEMPLATE_PATHS[kind]:
            node = (node or {}).get(key) or {}
        return node
    if kind is None and "containers" in manifest:
        return manifest
    return None


def _name(manifest: dict) -> str:
    meta = manifest.get("metadata") or {}
    return f"{manifest.get('kind', 'PodSpec')} {meta.get('namespace', '')}/{meta.get('name', '?')}".replace(" /", " ")


def _check_env(where: str, container: dict) -> list[str]:
    bad = []
    for var in container.get("env") or []:
        name, value = var.get("name", ""), var.get("value")
        if value is None:
            ref = (var.get("valueFrom") or {})
            if CREDENTIAL_ENV.search(name.upper()) and "secretKeyRef" not in ref:
                bad.append(f"{where}: env {name} holds a credential but does not come from a secretKeyRef")
            continue
        if CREDENTIAL_ENV.search(name.upper()):
            bad.append(f"{where}: env {name} holds a credential as a literal value (use valueFrom.secretKeyRef)")
        elif CREDENTIAL_VALUE.search(str(value)):
            bad.append(f"{where}: env {name} has a credential-looking literal value")
    return bad


def _check_container(where: str, container: dict, pod_ctx: dict) -> list[str]:
    ctx = container.get("securityContext") or {}
    bad = []
    non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
    if non_root is not True:
        bad.append(f"{where}: runAsNonRoot is not true (pod or container securityContext)")
    if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
        bad.append(f"{where}: runAsUser is 0 (root)")
    seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        bad.append(f"{where}: seccompProfile is {seccomp or 'unset'}, not RuntimeDefault (pod or container level)")
    if ctx.get("allowPrivilegeEscalation") is not False:
        bad.append(f"{where}: allowPrivilegeEscalation is not false")
    if ctx.get("privileged"):
        bad.append(f"{where}: privileged container")
    caps = ctx.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        bad.append(f"{where}: capabilities do not drop ALL")
    added = set(caps.get("add") or []) - ALLOWED_CAPABILITIES
    if added:
        bad.append(f"{where}: adds capabilities {sorted(added)}")
    return bad + _check_env(where, container)


def check_pod_spec(manifest: dict) -> list[str]:
    """Violations of the pod rules in a Pod / workload / pod spec: non-root, seccomp, no escalation, drop ALL,
    not privileged, no host namespaces or hostPath, credentials only from Secrets."""
    spec = pod_spec_of(manifest)
    if spec is None:
        return []
    name = _name(manifest)
    pod_ctx = spec.get("securityContext") or {}
    bad = [f"{name}: {field} is true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field)]
    bad += [f"{name}: volume {vol.get('name')} is a hostPath" for vol in spec.get("volumes") or [] if "hostPath" in vol]
    containers = [(kind, c) for kind in ("initContainers", "containers", "ephemeralContainers")
                  for c in spec.get(kind) or []]
    if not spec.get("containers"):
        bad.append(f"{name}: no containers")
    for kind, container in containers:
        bad += _check_container(f"{name} {kind[:-1]} {container.get('name', '?')}", container, pod_ctx)
    return bad


def check_rbac(objs: list[dict]) -> list[str]:
    """Violations of the RBAC rules: only namespaced Roles bound by RoleBindings; no wildcard or escalating
    verbs, no wildcard resources or API groups, no access to Secrets."""
    bad = []
    for obj in objs:
        kind, name = obj.get("kind"), _name(obj)
        if kind in ("ClusterRole", "ClusterRoleBinding"):
            bad.append(f"{name}: cluster-wide RBAC (use a Role and RoleBinding in the pods' namespace)")
        if kind in ("Role", "ClusterRole"):
            if kind == "Role" and not (obj.get("metadata") or {}).get("namespace"):
                bad.append(f"{name}: Role without a namespace")
            for i, rule in enumerate(obj.get("rules") or []):
                verbs, resources = set(rule.get("verbs") or []), set(rule.get("resources") or [])
                if verbs & DANGEROUS_VERBS:
                    bad.append(f"{name} rule {i}: verbs {sorted(verbs & DANGEROUS_VERBS)}")
                if "*" in resources or "*" in (rule.get("apiGroups") or []):
                    bad.append(f"{name} rule {i}: wildcard resources or apiGroups")
                if "secrets" in resources:
                    bad.append(f"{name} rule {i}: grants access to Secrets")
                if rule.get("nonResourceURLs"):
                    bad.append(f"{name} rule {i}: nonResourceURLs")
        if kind == "RoleBinding" and (obj.get("roleRef") or {}).get("kind") != "Role":
            bad.append(f"{name}: binds a {(obj.get('roleRef') or {}).get('kind')}, not a namespaced Role")
    return bad


def check_objects(objs: list[dict]) -> list[str]:
    """Every rule over a rendered set: pods and pod templates, RBAC, no Secret with inline data, no hostPath PV."""
    bad = check_rbac(objs)
    for obj in objs:
        bad += check_pod_spec(obj)
        if obj.get("kind") == "Secret" and (obj.get("data") or obj.get("stringData")):
            bad.append(f"{_name(obj)}: a Secret with inline values (reference existing Secrets instead)")
        if obj.get("kind") == "PersistentVolume" and "hostPath" in (obj.get("spec") or {}):
            bad.append(f"{_name(obj)}: hostPath PersistentVolume")
    return bad
