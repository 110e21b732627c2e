"""The Helm chart's deploy check (deploy/checks/helm.py), on the checkout and on copies of it
with one thing broken on purpose: each failure must name what broke."""

from __future__ import annotations

from pathlib import Path

import yaml
from tests.support.deploy import ROOT, break_value, copy_checkout, run_check

CHART = Path("deploy") / "helm" / "ffe"
RULES = Path("deploy") / "monitoring" / "rules"


def _rule_files(root: Path) -> list[Path]:
    return sorted((root / RULES).glob("*.yml"))


def _broken(tmp_path: Path, relative: Path, old: str, new: str) -> str:
    """Run the helm check on a copy with ``old`` replaced by ``new`` in one file; it must
    fail, and its output is returned to say why."""
    root = copy_checkout(tmp_path)
    break_value(root / relative, old, new)
    done = run_check("helm", root=root)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "FAIL helm" in output, output
    return output


def test_helm_check_when_run_on_the_checkout_then_passes() -> None:
    done = run_check("helm")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   helm" in done.stdout
    assert "kubernetes-validate --strict" in done.stdout
    assert "checkov (kubernetes): no failed check" in done.stdout


def test_helm_check_when_a_value_has_the_wrong_type_then_lint_names_the_key(
    tmp_path: Path,
) -> None:
    output = _broken(
        tmp_path,
        CHART / "values-staging.yaml",
        "api:\n  replicaCount: 2",
        'api:\n  replicaCount: "two"',
    )

    assert "helm lint staging" in output
    assert "/api/replicaCount': got string, want integer" in output


def test_helm_check_when_an_engine_is_unknown_then_lint_names_the_enum(tmp_path: Path) -> None:
    output = _broken(tmp_path, CHART / "values-production.yaml", "engine: keda", "engine: vpa")

    assert "/autoscaling/engine': value must be one of 'keda', 'hpa'" in output


def test_helm_check_when_the_root_filesystem_is_writable_then_names_the_deployment(
    tmp_path: Path,
) -> None:
    output = _broken(
        tmp_path, CHART / "values.yaml", "  readOnlyRootFilesystem: true\n", "  privileged: false\n"
    )

    assert "Deployment ffe-api container api: securityContext.readOnlyRootFilesystem" in output
    assert "Deployment ffe-agent container agent: securityContext.readOnlyRootFilesystem" in output


def test_helm_check_when_the_agent_rolls_then_fails_on_its_strategy(tmp_path: Path) -> None:
    output = _broken(
        tmp_path,
        CHART / "templates" / "deployment-agent.yaml",
        "type: Recreate",
        "type: RollingUpdate",
    )

    assert "Deployment ffe-agent: strategy 'RollingUpdate', not Recreate" in output


def test_helm_check_when_the_ray_driver_joins_no_node_then_names_the_worker(
    tmp_path: Path,
) -> None:
    output = _broken(
        tmp_path,
        CHART / "templates" / "deployment-worker.yaml",
        'ray start --address="$FFE__COMPUTE__RAY_ADDRESS" --num-cpus=0',
        "true",
    )

    assert "Deployment ffe-worker does not join the cluster as a node" in output


def test_helm_check_when_a_template_has_an_unknown_field_then_kubernetes_validate_fails(
    tmp_path: Path,
) -> None:
    output = _broken(
        tmp_path,
        CHART / "templates" / "deployment-api.yaml",
        "  revisionHistoryLimit: 5\n",
        "  revisionHistoryLimit: 5\n  surgeLimit: 2\n",
    )

    assert "kubernetes-validate: ERROR" in output
    assert "deployment/ffe-api" in output
    assert "'surgeLimit' was unexpected" in output


def test_helm_check_when_the_rule_files_are_gone_then_the_prometheus_rule_fails(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    for rules in (root / RULES).glob("*.yml"):
        rules.unlink()

    done = run_check("helm", root=root)

    assert done.returncode == 1, done.stdout
    assert "no rule groups in monitoring/rules/*.yml" in done.stdout


def test_helm_check_when_the_prometheus_rule_skips_a_rule_file_then_fails(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    (root / RULES / "zz-extra.yml").write_text(
        "groups:\n  - name: ffe-extra\n    rules:\n"
        "      - record: ffe:extra:sum\n        expr: sum(ffe_jobs_running)\n"
    )
    break_value(
        root / CHART / "templates" / "prometheusrule.yaml",
        '"monitoring/rules/*.yml" }}',
        '"monitoring/rules/[a-y]*.yml" }}',
    )

    done = run_check("helm", root=root)

    assert done.returncode == 1, done.stdout
    assert "PrometheusRule ffe: groups" in done.stdout
    assert "are not those of deploy/monitoring/rules/*.yml" in done.stdout
    assert "'ffe-extra'" in done.stdout


def test_helm_check_when_a_rule_file_is_added_then_the_prometheus_rule_has_it(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    (root / RULES / "zz-extra.yml").write_text(
        "groups:\n  - name: ffe-extra\n    rules:\n"
        "      - record: ffe:extra:sum\n        expr: sum(ffe_jobs_running)\n"
    )

    done = run_check("helm", root=root)

    assert done.returncode == 0, done.stdout
    groups = sum(len(yaml.safe_load(each.read_text())["groups"]) for each in _rule_files(ROOT))
    assert f"PrometheusRule: the {groups + 1} groups of deploy/monitoring/rules" in done.stdout


def test_helm_check_when_argo_cd_does_not_prune_then_names_the_field(tmp_path: Path) -> None:
    output = _broken(
        tmp_path, Path("deploy") / "argocd" / "application.yaml", "prune: true", "prune: false"
    )

    assert "application.yaml: wants spec.syncPolicy.automated.prune true" in output


def test_helm_check_when_production_has_no_cluster_issuer_then_names_the_tls(
    tmp_path: Path,
) -> None:
    output = _broken(
        tmp_path,
        CHART / "values-production.yaml",
        "clusterIssuer: letsencrypt-production",
        'clusterIssuer: ""',
    )

    assert "production's Ingress has no TLS through cert-manager" in output


def test_helm_check_when_the_ingress_has_no_trusted_proxies_then_names_the_key_and_why(
    tmp_path: Path,
) -> None:
    output = _broken(
        tmp_path,
        CHART / "values-staging.yaml",
        '  trustedProxies: ["10.0.0.0/8"]\n',
        "  trustedProxies: []\n",
    )

    assert (
        "staging: Deployment ffe-api sits behind the rendered Ingress but api.trustedProxies "
        "is empty" in output
    )
    assert "rate limits and the login lockout" in output
    assert "HSTS" in output
    assert "production: Deployment ffe-api sits" not in output  # production still sets it


def test_helm_check_when_a_keda_query_reads_every_namespace_then_names_the_trigger(
    tmp_path: Path,
) -> None:
    output = _broken(
        tmp_path,
        CHART / "templates" / "autoscaling-keda.yaml",
        'query: max(ffe_job_queue_depth{namespace="{{ .Release.Namespace }}"})',
        "query: max(ffe_job_queue_depth)",
    )

    assert (
        "production: ScaledObject ffe-worker: prometheus query 'max(ffe_job_queue_depth)' "
        'does not select {namespace="ffe-production"}' in output
    )


def test_helm_check_when_an_hpa_metric_reads_every_namespace_then_names_the_metric(
    tmp_path: Path,
) -> None:
    output = _broken(
        tmp_path,
        CHART / "templates" / "autoscaling-hpa.yaml",
        "name: ffe_job_queue_depth_max\n"
        "          selector:\n"
        "            matchLabels:\n"
        "              namespace: {{ .Release.Namespace }}\n",
        "name: ffe_job_queue_depth_max\n",
    )

    assert (
        "production+hpa+ray: HorizontalPodAutoscaler ffe-worker: External metric "
        "ffe_job_queue_depth_max does not select namespace ffe-production" in output
    )
