"""The Helm chart (deploy/helm/ffe) and the Argo CD Application, offline.

For every values file: `helm lint --strict` (the values schema included) through helm-python,
then the chart rendered as `helm install ffe` would; the built-in kinds checked by
kubernetes-validate --strict against Kubernetes 1.32, the custom resources (KEDA, Prometheus
Operator, KubeRay, Argo CD) by the fields we rely on, what every pod must have (non-root,
read-only root, no capabilities, probes, resources, secrets only by reference), and checkov
once over everything rendered, with the skips of deploy/helm/checkov.yaml.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from helm_python.chart import Chart, lint

from checks.common import CheckError, fail_if, load, run, tool

KUBE_VERSION = "1.32.0"
RELEASE = "ffe"
CUSTOM_GROUPS = ("keda.sh/", "monitoring.coreos.com/", "ray.io/", "argoproj.io/")
"""API groups kubernetes-validate does not know: checked here field by field instead."""

# (label, values file, namespace, overrides): every values file as shipped, plus production
# with the other autoscaling engine and the RayCluster on, so every template is rendered.
CASES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("default", "values.yaml", "ffe", {}),
    ("dev", "values-dev.yaml", "ffe-dev", {}),
    ("staging", "values-staging.yaml", "ffe-staging", {}),
    ("production", "values-production.yaml", "ffe-production", {}),
    (
        "production+hpa+ray",
        "values-production.yaml",
        "ffe-production",
        {"autoscaling": {"engine": "hpa"}, "ray": {"enabled": True}},
    ),
)
NAMES = {
    "Deployment": {"ffe-api", "ffe-worker", "ffe-agent", "ffe-precompute"},
    "CronJob": {"ffe-backup"},
    "Job": {"ffe-migrate"},
    "Service": {"ffe-api"},
}
"""Names other deploy files rely on (the CD workflow runs ffe-backup, waits on ffe-api)."""
KEDA_TRIGGERS = {"cpu", "memory", "prometheus"}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001}
CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
}
SECRET_SETTINGS = ("FFE__API__SECRET_KEY", "FFE__DATABASE__URL", "FFE__REDIS__URL")

Manifest = dict[str, Any]


def check(root: Path) -> list[str]:
    chart_dir = root / "deploy" / "helm" / "ffe"
    fail_if([] if (chart_dir / "Chart.yaml").exists() else ["no chart at deploy/helm/ffe"])
    started = time.monotonic()
    verified = [_check_metadata(root, chart_dir)]
    problems: list[str] = []
    rendered: dict[str, list[Manifest]] = {}
    for label, values_file, namespace, overrides in CASES:
        values = _merge(load(chart_dir / values_file) or {}, overrides)
        problems += _lint(chart_dir, label, values)
        try:
            rendered[label] = _render(chart_dir, values, namespace)
        except Exception as error:  # a template's fail, or a value it cannot render
            problems.append(f"{label}: the chart does not render: {_first_lines(error)}")
    fail_if(problems)
    verified.append(
        f"helm lint --strict (schema included): {len(CASES)} values sets clean "
        f"({time.monotonic() - started:.1f} s with rendering)"
    )

    rule_groups = _rule_groups(root)
    for label, values_file, _, overrides in CASES:
        manifests = rendered[label]
        values = _merge(load(chart_dir / values_file) or {}, overrides)
        problems += [f"{label}: {each}" for each in _check_manifests(manifests, rule_groups)]
        problems += [f"{label}: {each}" for each in _check_environment(label, manifests, values)]
    application = _check_application(root, chart_dir, problems)
    fail_if(problems)
    verified.append(
        "every pod non-root (10001), read-only root, no capabilities, seccomp RuntimeDefault, "
        "probed and sized; the agent one Recreate replica; no Secret rendered; custom "
        "resources (ScaledObject, ServiceMonitor, PrometheusRule, RayCluster) well formed; "
        "the autoscalers' Prometheus queries select the release's namespace; behind an Ingress "
        "the API trusts the controller's forwarding headers (api.trustedProxies)"
    )
    verified.append(f"PrometheusRule: the {len(rule_groups)} groups of deploy/monitoring/rules")
    verified.append(f"Argo CD Application {application}: the chart, production values, self-heal")

    with tempfile.TemporaryDirectory(prefix="ffe-helm-") as scratch:
        files = _write(Path(scratch), rendered)
        started = time.monotonic()
        fail_if(_kubernetes_validate(Path(scratch), files))
        verified.append(
            f"kubernetes-validate --strict {KUBE_VERSION}: "
            f"{sum(1 for _, builtin in files if builtin)} manifests "
            f"({time.monotonic() - started:.1f} s)"
        )
        started = time.monotonic()
        fail_if(_checkov(Path(scratch), root / "deploy" / "helm" / "checkov.yaml"))
        verified.append(
            f"checkov (kubernetes): no failed check in {len(files)} manifests "
            f"({time.monotonic() - started:.1f} s)"
        )
    return verified


def write_rendered(root: Path, into: Path) -> list[Path]:
    """Render the chart for every values set of CASES and write the manifests under ``into``,
    one folder a values set (``<n>-<label>``), one file a manifest; returns the files. The
    test suite reads them to load each container's settings and arguments with ffe itself,
    which this environment does not have:

        cd deploy && python -m checks.helm --root .. --out FOLDER
    """
    chart_dir = root / "deploy" / "helm" / "ffe"
    rendered = {
        label: _render(chart_dir, _merge(load(chart_dir / values_file) or {}, overrides), ns)
        for label, values_file, ns, overrides in CASES
    }
    into.mkdir(parents=True, exist_ok=True)
    return [path for path, _ in _write(into, rendered)]


def main(argv: list[str] | None = None) -> int:
    """``python -m checks.helm --out FOLDER``: write the rendered manifests (write_rendered)."""
    import argparse

    parser = argparse.ArgumentParser(description=write_rendered.__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--out", type=Path, required=True, help="the folder to write into")
    args = parser.parse_args(argv)
    files = write_rendered(args.root.resolve(), args.out)
    print(f"wrote {len(files)} manifests under {args.out}")
    return 0


# -- the chart ------------------------------------------------------------------------------


def _check_metadata(root: Path, chart_dir: Path) -> str:
    chart = load(chart_dir / "Chart.yaml")
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    problems = []
    if chart.get("apiVersion") != "v2":
        problems.append(f"Chart.yaml: apiVersion {chart.get('apiVersion')!r}, not v2")
    if str(chart.get("appVersion")) != version:
        problems.append(
            f"Chart.yaml: appVersion {chart.get('appVersion')!r} is not pyproject.toml's "
            f"version {version!r}"
        )
    if chart.get("dependencies"):
        problems.append("Chart.yaml: subcharts need a chart repository; the chart has none")
    ray_lock = root / "requirements-ray.lock"
    if ray_lock.exists():  # the Ray image's lock: the RayCluster must say the same Ray
        pins = re.findall(r"^ray==([^\s;]+)", ray_lock.read_text(), flags=re.M)
        ray_version = (load(chart_dir / "values.yaml") or {}).get("ray", {}).get("rayVersion")
        if pins and str(ray_version) != pins[0]:
            problems.append(
                f"values.yaml: ray.rayVersion {ray_version!r} is not requirements-ray.lock's "
                f"ray {pins[0]}"
            )
    link = chart_dir / "monitoring"
    if not link.is_symlink() or link.resolve() != (root / "deploy" / "monitoring").resolve():
        problems.append("deploy/helm/ffe/monitoring must be a symlink to ../../monitoring")
    fail_if(problems)
    return f"Chart.yaml: apiVersion v2, appVersion {version} (pyproject.toml), no subcharts"


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@contextlib.contextmanager
def _quiet_symlink_notes() -> Iterator[None]:
    """Helm's loader logs (to the process's stderr, from Go) an INFO line each time it follows
    the chart's monitoring symlink, which is on purpose here: drop those, pass the rest on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured:
                if "found symbolic link in path" not in line:
                    sys.stderr.write(line)


def _lint(chart_dir: Path, label: str, values: dict[str, Any]) -> list[str]:
    with _quiet_symlink_notes():
        report = lint(chart_dir, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    found = [
        f"helm lint {label}: {each['path']}: {each['error'].strip()}"
        for each in report.get("messages", [])
        if each.get("severity", 0) >= 2
    ]
    if report.get("errors") and not found:
        found = [f"helm lint {label}: {error.strip()}" for error in report["errors"]]
    return found


def _render(chart_dir: Path, values: dict[str, Any], namespace: str) -> list[Manifest]:
    manifests = []
    with _quiet_symlink_notes(), Chart.load(chart_dir) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                document["__template__"] = path
                manifests.append(document)
    return manifests


def _first_lines(error: Exception) -> str:
    return " ".join(str(error).split())[:400]


def _rule_groups(root: Path) -> list[dict[str, Any]]:
    """Every group of deploy/monitoring/rules/*.yml, in file name order (as .Files.Glob)."""
    groups: list[dict[str, Any]] = []
    for path in sorted((root / "deploy" / "monitoring" / "rules").glob("*.yml")):
        groups += (load(path) or {}).get("groups") or []
    return groups


# -- what every manifest must have ----------------------------------------------------------


def _name(manifest: Manifest) -> str:
    return f"{manifest.get('kind')} {manifest.get('metadata', {}).get('name')}"


def _get(value: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(value, dict) and isinstance(key, str):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and key < len(value):
            value = value[key]
        else:
            return None
    return value


def _pod_specs(manifest: Manifest) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = manifest.get("kind")
    if kind in ("Deployment", "Job"):
        yield _name(manifest), _get(manifest, "spec", "template", "spec") or {}
    elif kind == "CronJob":
        yield _name(manifest), _get(manifest, "spec", "jobTemplate", "spec", "template", "spec")
    elif kind == "RayCluster":
        yield f"{_name(manifest)} head", _get(manifest, "spec", "headGroupSpec", "template", "spec")
        for group in _get(manifest, "spec", "workerGroupSpecs") or []:
            name = f"{_name(manifest)} group {_get(group, 'groupName')}"
            yield name, _get(group, "template", "spec")


def _check_pod(name: str, spec: dict[str, Any] | None, probed: bool) -> list[str]:
    if not isinstance(spec, dict):
        return [f"{name}: no pod spec"]
    problems = []
    pod = spec.get("securityContext") or {}
    for key, want in POD_SECURITY.items():
        if pod.get(key) != want:
            problems.append(f"{name}: pod securityContext.{key} is {pod.get(key)!r}, not {want}")
    if _get(pod, "seccompProfile", "type") != "RuntimeDefault":
        problems.append(f"{name}: pod seccompProfile is not RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: automountServiceAccountToken is not false")
    mounts = [
        mount.get("mountPath")
        for container in spec.get("containers") or []
        for mount in container.get("volumeMounts") or []
    ]
    if "/tmp" not in mounts:
        problems.append(f"{name}: /tmp is not a volume (the root filesystem is read-only)")
    for container in spec.get("containers") or [{}]:
        problems += _check_container(f"{name} container {container.get('name')}", container)
        if probed:
            problems += [
                f"{name} container {container.get('name')}: no {probe} on an HTTP path"
                for probe in ("startupProbe", "livenessProbe", "readinessProbe")
                if not _get(container, probe, "httpGet", "path")
            ]
    return problems


def _check_container(where: str, container: dict[str, Any]) -> list[str]:
    problems = []
    context = container.get("securityContext") or {}
    for key, want in CONTAINER_SECURITY.items():
        if context.get(key) is not want:
            problems.append(f"{where}: securityContext.{key} is {context.get(key)!r}")
    if "ALL" not in (_get(context, "capabilities", "drop") or []):
        problems.append(f"{where}: capabilities do not drop ALL")
    image = str(container.get("image", ""))
    if "@sha256:" not in image and (":" not in image or image.endswith(":latest")):
        problems.append(f"{where}: image {image!r} has neither a pinned tag nor a digest")
    if container.get("imagePullPolicy") != "IfNotPresent":
        problems.append(f"{where}: imagePullPolicy is not IfNotPresent")
    resources = container.get("resources") or {}
    problems += [
        f"{where}: no resources.{part}.{what}"
        for part in ("requests", "limits")
        for what in ("cpu", "memory")
        if not _get(resources, part, what)
    ]
    problems += [
        f"{where}: {variable['name']} has a value in the chart; it must come from "
        "existingSecret by secretKeyRef"
        for variable in container.get("env") or []
        if variable.get("name") in SECRET_SETTINGS and "value" in variable
    ]
    return problems


def _check_manifests(manifests: list[Manifest], rule_groups: list[dict[str, Any]]) -> list[str]:
    problems = []
    by_kind: dict[str, dict[str, Manifest]] = {}
    for manifest in manifests:
        name = _get(manifest, "metadata", "name")
        by_kind.setdefault(str(manifest.get("kind")), {})[str(name)] = manifest
        if manifest.get("kind") == "Secret":
            problems.append(
                f"{_name(manifest)} is rendered: credentials come from existingSecret only"
            )
        for pod_name, spec in _pod_specs(manifest):
            problems += _check_pod(pod_name, spec, probed=manifest.get("kind") == "Deployment")
    for kind, names in NAMES.items():
        for missing in sorted(names - set(by_kind.get(kind, {}))):
            problems.append(f"no {kind} {missing} (other deploy files use that name)")
    return problems + _check_agent_and_hook(by_kind) + _check_custom(by_kind, rule_groups)


def _check_agent_and_hook(by_kind: dict[str, dict[str, Manifest]]) -> list[str]:
    problems = []
    agent = by_kind.get("Deployment", {}).get("ffe-agent")
    if agent:
        if _get(agent, "spec", "replicas") != 1:
            problems.append(f"Deployment ffe-agent: replicas {_get(agent, 'spec', 'replicas')!r}")
        strategy = _get(agent, "spec", "strategy", "type")
        if strategy != "Recreate":
            problems.append(
                f"Deployment ffe-agent: strategy {strategy!r}, not Recreate (a rollout must "
                "never run two agents)"
            )
    migrate = by_kind.get("Job", {}).get("ffe-migrate")
    if migrate:
        hooks = _get(migrate, "metadata", "annotations") or {}
        if set(str(hooks.get("helm.sh/hook", "")).split(",")) != {"pre-install", "pre-upgrade"}:
            problems.append("Job ffe-migrate: not a pre-install,pre-upgrade hook")
        if "before-hook-creation" not in str(hooks.get("helm.sh/hook-delete-policy")):
            problems.append("Job ffe-migrate: hook-delete-policy lacks before-hook-creation")
    return problems


def _check_custom(
    by_kind: dict[str, dict[str, Manifest]], rule_groups: list[dict[str, Any]]
) -> list[str]:
    problems = []
    deployments = by_kind.get("Deployment", {})
    for autoscaler in by_kind.get("ScaledObject", {}).values():
        problems += _check_scaled_object(autoscaler, deployments)
    for autoscaler in by_kind.get("HorizontalPodAutoscaler", {}).values():
        target = _get(autoscaler, "spec", "scaleTargetRef", "name")
        if target not in deployments:
            problems.append(f"{_name(autoscaler)}: scales {target!r}, no such Deployment")
        namespace = _get(autoscaler, "metadata", "namespace")
        for metric in _get(autoscaler, "spec", "metrics") or []:
            selected = _get(metric, "external", "metric", "selector", "matchLabels") or {}
            if metric.get("type") == "External" and selected.get("namespace") != namespace:
                problems.append(
                    f"{_name(autoscaler)}: External metric "
                    f"{_get(metric, 'external', 'metric', 'name')} does not select namespace "
                    f"{namespace} (metric.selector.matchLabels.namespace)"
                )
    for monitor in by_kind.get("ServiceMonitor", {}).values():
        problems += _check_service_monitor(monitor, by_kind.get("Service", {}))
    for rule in by_kind.get("PrometheusRule", {}).values():
        problems += _check_prometheus_rule(rule, rule_groups)
    for cluster in by_kind.get("RayCluster", {}).values():
        problems += _check_ray_cluster(cluster, deployments.get("ffe-worker"))
    return problems


def _check_environment(label: str, manifests: list[Manifest], values: dict[str, Any]) -> list[str]:
    """What each environment promises: dev one replica of everything and no autoscaling or TLS;
    production TLS through cert-manager, autoscaling, PDBs and the monitoring objects; the
    Ingress's certificate annotation exactly when a ClusterIssuer is set."""
    kinds: dict[str, list[Manifest]] = {}
    for manifest in manifests:
        kinds.setdefault(str(manifest.get("kind")), []).append(manifest)
    problems = []
    ingress = _get(values, "ingress") or {}
    issuer = _get(ingress, "certManager", "clusterIssuer")
    for each in kinds.get("Ingress", []):
        annotation = (_get(each, "metadata", "annotations") or {}).get(
            "cert-manager.io/cluster-issuer"
        )
        if annotation != (issuer or None):
            problems.append(
                f"{_name(each)}: cluster-issuer annotation {annotation!r}, values {issuer!r}"
            )
        tls = _get(each, "spec", "tls", 0, "secretName")
        if bool(tls) != bool(_get(ingress, "tls", "enabled")):
            problems.append(f"{_name(each)}: TLS {tls!r} while ingress.tls.enabled is not so")
    problems += _check_trusted_proxies(kinds)
    if label == "dev":
        problems += [
            f"{_name(each)}: {_get(each, 'spec', 'replicas')!r} replicas in dev, not 1"
            for each in kinds.get("Deployment", [])
            if _get(each, "spec", "replicas") != 1
        ]
        problems += [
            f"{kind} rendered in dev (no autoscaling, no TLS there)"
            for kind in ("ScaledObject", "HorizontalPodAutoscaler")
            if kinds.get(kind)
        ]
        if any(_get(each, "spec", "tls") for each in kinds.get("Ingress", [])):
            problems.append("the dev Ingress has TLS")
    if label == "production":
        wanted = {"ScaledObject": 2, "PodDisruptionBudget": 2, "ServiceMonitor": 1}
        wanted |= {"PrometheusRule": 1, "Ingress": 1, "NetworkPolicy": 1}
        problems += [
            f"production renders {len(kinds.get(kind, []))} {kind}, wants at least {count}"
            for kind, count in wanted.items()
            if len(kinds.get(kind, [])) < count
        ]
        if not issuer or not _get(ingress, "tls", "enabled"):
            problems.append("production's Ingress has no TLS through cert-manager")
    return problems


def _check_trusted_proxies(kinds: dict[str, list[Manifest]]) -> list[str]:
    """Behind an Ingress the API's peer is always the ingress controller: unless ffe trusts
    the controller's X-Forwarded-For and X-Forwarded-Proto (api.trusted_proxies), every client
    looks like the controller, one address for all."""
    if not kinds.get("Ingress"):
        return []
    problems = []
    for deployment in kinds.get("Deployment", []):
        if _get(deployment, "metadata", "labels", "app.kubernetes.io/component") != "api":
            continue
        env = {
            each.get("name"): each.get("value")
            for container in _get(deployment, "spec", "template", "spec", "containers") or []
            for each in container.get("env") or []
        }
        if env.get("FFE__API__TRUSTED_PROXIES") in (None, "", "[]"):
            problems.append(
                f"{_name(deployment)} sits behind the rendered Ingress but api.trustedProxies "
                "is empty: ffe would take every client for the ingress controller, so the rate "
                "limits and the login lockout would hit all clients at once, the audit log "
                "would record the controller's address, and HSTS would not be sent (the "
                "controller's X-Forwarded-Proto is not believed); set api.trustedProxies to the "
                "ingress controller's pod network"
            )
    return problems


# -- custom resources: the fields we rely on ------------------------------------------------


def _check_scaled_object(scaled: Manifest, deployments: dict[str, Manifest]) -> list[str]:
    name = _name(scaled)
    spec = scaled.get("spec") or {}
    problems = []
    target = _get(spec, "scaleTargetRef", "name")
    if target not in deployments:
        problems.append(f"{name}: spec.scaleTargetRef.name {target!r} is no rendered Deployment")
    low, high = spec.get("minReplicaCount"), spec.get("maxReplicaCount")
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
        problems.append(f"{name}: minReplicaCount {low!r} / maxReplicaCount {high!r}")
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        return [*problems, f"{name}: no triggers"]
    for trigger in triggers:
        problems += _check_trigger(name, trigger)
        # Staging and production may share one Prometheus: a query that does not select its
        # release's namespace scales one release on the other's traffic.
        scope = f'namespace="{_get(scaled, "metadata", "namespace")}"'
        query = str(_get(trigger, "metadata", "query") or "")
        if trigger.get("type") == "prometheus" and scope not in query:
            problems.append(f"{name}: prometheus query {query!r} does not select {{{scope}}}")
    return problems


def _check_trigger(name: str, trigger: dict[str, Any]) -> list[str]:
    kind = trigger.get("type")
    metadata = trigger.get("metadata") or {}
    problems = []
    if kind not in KEDA_TRIGGERS:
        problems.append(f"{name}: trigger type {kind!r} is not one of {sorted(KEDA_TRIGGERS)}")
    if not all(isinstance(value, str) for value in metadata.values()):
        problems.append(f"{name}: {kind} trigger metadata values must be strings")
    if kind in ("cpu", "memory") and (
        trigger.get("metricType") != "Utilization" or not str(metadata.get("value")).isdigit()
    ):
        problems.append(f"{name}: {kind} trigger needs metricType Utilization and a value")
    if kind == "prometheus":
        problems += [
            f"{name}: prometheus trigger has no metadata.{key}"
            for key in ("serverAddress", "query", "threshold")
            if not metadata.get(key)
        ]
        try:
            float(metadata.get("threshold", ""))
        except ValueError:
            problems.append(f"{name}: prometheus threshold {metadata.get('threshold')!r}")
        if trigger.get("metricType") not in ("Value", "AverageValue"):
            problems.append(f"{name}: prometheus trigger metricType not Value/AverageValue")
    return problems


def _check_service_monitor(monitor: Manifest, services: dict[str, Manifest]) -> list[str]:
    name = _name(monitor)
    endpoints = _get(monitor, "spec", "endpoints")
    if not isinstance(_get(monitor, "spec", "selector", "matchLabels"), dict):
        return [f"{name}: spec.selector.matchLabels is not a mapping"]
    if not isinstance(endpoints, list) or not endpoints:
        return [f"{name}: no endpoints"]
    ports = {
        port.get("name") for service in services.values() for port in _get(service, "spec", "ports")
    }
    problems = []
    for endpoint in endpoints:
        if endpoint.get("port") not in ports:
            problems.append(f"{name}: endpoint port {endpoint.get('port')!r} is no Service's port")
        if endpoint.get("path") != "/metrics":
            problems.append(f"{name}: endpoint path {endpoint.get('path')!r}")
    api = [each for each in endpoints if each.get("port") == "http"]
    if not api or not _get(api[0], "authorization", "credentials", "key"):
        problems.append(f"{name}: the API's endpoint has no bearer credentials (read key)")
    return problems


def _check_prometheus_rule(rule: Manifest, rule_groups: list[dict[str, Any]]) -> list[str]:
    groups = _get(rule, "spec", "groups")
    if not isinstance(groups, list) or not groups:
        return [f"{_name(rule)}: spec.groups is empty"]
    if groups != rule_groups:
        rendered = [each.get("name") for each in groups]
        files = [each.get("name") for each in rule_groups]
        return [
            f"{_name(rule)}: groups {rendered} are not those of deploy/monitoring/rules/*.yml "
            f"{files}"
        ]
    return []


def _check_ray_cluster(cluster: Manifest, worker: Manifest | None) -> list[str]:
    name = _name(cluster)
    spec = cluster.get("spec") or {}
    problems = []
    head = spec.get("headGroupSpec") or {}
    params = head.get("rayStartParams")
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        problems.append(f"{name}: headGroupSpec.rayStartParams must map to strings")
        params = {}
    if not _get(head, "template", "spec", "containers", 0, "image"):
        problems.append(f"{name}: headGroupSpec.template has no container image")
    groups = spec.get("workerGroupSpecs")
    if not isinstance(groups, list) or not groups:
        problems.append(f"{name}: no workerGroupSpecs")
    for group in groups or []:
        counts = [group.get(key) for key in ("minReplicas", "replicas", "maxReplicas")]
        if not isinstance(group.get("groupName"), str):
            problems.append(f"{name}: a worker group without a groupName")
        if not all(isinstance(n, int) for n in counts) or sorted(counts) != counts:
            problems.append(f"{name}: group {group.get('groupName')} min/replicas/max {counts}")
        if not isinstance(group.get("rayStartParams"), dict):
            problems.append(f"{name}: group {group.get('groupName')} has no rayStartParams")
    address = f"{_get(cluster, 'metadata', 'name')}-head-svc:{params.get('port')}"
    env = {
        each.get("name"): each.get("value")
        for each in _get(worker, "spec", "template", "spec", "containers", 0, "env") or []
    }
    if env.get("FFE__COMPUTE__EXECUTOR") != "ray" or env.get("FFE__COMPUTE__RAY_ADDRESS") != (
        address
    ):
        problems.append(
            f"{name}: Deployment ffe-worker is not pointed at it (FFE__COMPUTE__EXECUTOR=ray, "
            f"FFE__COMPUTE__RAY_ADDRESS={address})"
        )
    # The driver (the worker's jobs) must run on a node of the cluster: the pod joins it
    # with `ray start --address=...` before `exec ffe`.
    script = " ".join(_get(worker, "spec", "template", "spec", "containers", 0, "command") or [])
    if "ray start --address=" not in script or "exec ffe" not in script:
        problems.append(
            f"{name}: Deployment ffe-worker does not join the cluster as a node before it runs "
            "ffe (its command must `ray start --address=...` then `exec ffe`): a Ray driver "
            "needs a raylet on its own machine"
        )
    return problems


def _check_application(root: Path, chart_dir: Path, problems: list[str]) -> str:
    path = root / "deploy" / "argocd" / "application.yaml"
    if not path.exists():
        problems.append("no deploy/argocd/application.yaml")
        return ""
    app = load(path) or {}
    where = "deploy/argocd/application.yaml"
    source = _get(app, "spec", "source") or {}
    helm = source.get("helm") or {}
    automated = _get(app, "spec", "syncPolicy", "automated") or {}
    wanted = [
        (app.get("apiVersion") == "argoproj.io/v1alpha1", "apiVersion argoproj.io/v1alpha1"),
        (app.get("kind") == "Application", "kind Application"),
        (source.get("path") == "deploy/helm/ffe", "spec.source.path deploy/helm/ffe"),
        (isinstance(source.get("repoURL"), str), "spec.source.repoURL"),
        (helm.get("releaseName") == RELEASE, f"spec.source.helm.releaseName {RELEASE}"),
        (
            helm.get("valueFiles") == ["values-production.yaml"],
            "spec.source.helm.valueFiles [values-production.yaml]",
        ),
        (
            _get(app, "spec", "destination", "namespace") == "ffe-production",
            "spec.destination.namespace ffe-production",
        ),
        (automated.get("prune") is True, "spec.syncPolicy.automated.prune true"),
        (automated.get("selfHeal") is True, "spec.syncPolicy.automated.selfHeal true"),
        (
            "CreateNamespace=true" in (_get(app, "spec", "syncPolicy", "syncOptions") or []),
            "spec.syncPolicy.syncOptions CreateNamespace=true",
        ),
    ]
    problems += [f"{where}: wants {what}" for ok, what in wanted if not ok]
    for values_file in helm.get("valueFiles") or []:
        if not (chart_dir / values_file).exists():
            problems.append(f"{where}: value file {values_file} is not in the chart")
    return str(_get(app, "metadata", "name"))


# -- the validators -------------------------------------------------------------------------


def _write(into: Path, rendered: dict[str, list[Manifest]]) -> list[tuple[Path, bool]]:
    """One file per manifest, under a directory per values set; (path, is a built-in kind)."""
    files = []
    for number, (label, manifests) in enumerate(rendered.items()):
        folder = into / f"{number}-{label.replace('+', '-')}"
        folder.mkdir()
        bodies = [
            {key: value for key, value in manifest.items() if key != "__template__"}
            for manifest in manifests
        ]
        for index, body in enumerate(bodies + [pod for each in bodies for pod in _ray_pods(each)]):
            name = f"{index:02d}-{body.get('kind', '').lower()}-{_get(body, 'metadata', 'name')}"
            path = folder / f"{name}.yaml"
            path.write_text(yaml.safe_dump(body, sort_keys=False))
            builtin = not str(body.get("apiVersion", "")).startswith(CUSTOM_GROUPS)
            files.append((path, builtin))
    return files


def _ray_pods(manifest: Manifest) -> list[Manifest]:
    """A RayCluster's pod templates as Pods: KubeRay makes Pods of them, so kubernetes-validate
    and checkov see the Ray pods' specs as well."""
    if manifest.get("kind") != "RayCluster":
        return []
    metadata = manifest.get("metadata") or {}
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{metadata.get('name')}-{index}",
                "namespace": metadata.get("namespace"),
                "labels": {"ray.io/cluster": metadata.get("name")},
            },
            "spec": spec,
        }
        for index, (_, spec) in enumerate(_pod_specs(manifest))
    ]


def _kubernetes_validate(scratch: Path, files: list[tuple[Path, bool]]) -> list[str]:
    builtin = [str(path) for path, is_builtin in files if is_builtin]
    done = run(
        [tool("kubernetes-validate"), "--strict", "-k", KUBE_VERSION, "--quiet", *builtin],
        timeout=120,
    )
    found = [
        line.replace(f"{scratch}/", "")
        for line in (done.stdout + done.stderr).splitlines()
        if line.startswith(("ERROR", "WARN"))
    ]
    if done.returncode and not found:
        found = [f"kubernetes-validate failed: {(done.stdout + done.stderr).strip()[:400]}"]
    return [f"kubernetes-validate: {line}" for line in found]


def _checkov(scratch: Path, config: Path) -> list[str]:
    command = [tool("checkov"), "-d", str(scratch), "--framework", "kubernetes"]
    command += ["--compact", "--quiet", "-o", "json", "--skip-download"]
    if config.exists():
        command += ["--config-file", str(config)]
    done = run(command, timeout=300)
    try:
        reports = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        raise CheckError([f"checkov gave no report: {done.stderr.strip()[-400:]}"]) from None
    found = []
    for report in reports if isinstance(reports, list) else [reports]:
        for failed in _get(report, "results", "failed_checks") or []:
            found.append(
                f"checkov {failed['check_id']} ({failed['check_name']}): {failed['resource']} "
                f"in {str(failed.get('file_path', '')).lstrip('/')}"
            )
        errors = _get(report, "summary", "parsing_errors")
        if errors:
            found.append(f"checkov could not parse {errors} rendered file(s)")
    return found


if __name__ == "__main__":
    sys.exit(main())
