"""The Helm chart's deploy check (deploy/checks/helm.py), on the checkout and on copies of it
with one thing broken on purpose: each failure must name what broke."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests.support.deploy import ROOT, break_value, broken, copy_checkout, failing, passing

CHART = Path("deploy") / "helm" / "ffe"
RULES = Path("deploy") / "monitoring" / "rules"


def _rule_files(root: Path) -> list[Path]:
    return sorted((root / RULES).glob("*.yml"))


def _add_rule_file(root: Path) -> None:
    """A rule file beside the checkout's, with one group, ffe-extra."""
    (root / RULES / "zz-extra.yml").write_text(
        "groups:\n  - name: ffe-extra\n    rules:\n"
        "      - record: ffe:extra:sum\n        expr: sum(ffe_jobs_running)\n"
    )


def test_helm_check_when_run_on_the_checkout_then_passes() -> None:
    output = passing("helm")

    assert "kubernetes-validate --strict" in output
    assert "checkov (kubernetes): no failed check" in output


BROKEN = [
    pytest.param(
        CHART / "values-staging.yaml",
        "api:\n  replicaCount: 2",
        'api:\n  replicaCount: "two"',
        ["helm lint staging", "/api/replicaCount': got string, want integer"],
        id="lint-names-a-value-of-the-wrong-type",
    ),
    pytest.param(
        CHART / "values-production.yaml",
        "engine: keda",
        "engine: vpa",
        ["/autoscaling/engine': value must be one of 'keda', 'hpa'"],
        id="lint-names-an-unknown-engine",
    ),
    pytest.param(
        CHART / "values.yaml",
        "  readOnlyRootFilesystem: true\n",
        "  privileged: false\n",
        [
            "Deployment ffe-api container api: securityContext.readOnlyRootFilesystem",
            "Deployment ffe-agent container agent: securityContext.readOnlyRootFilesystem",
        ],
        id="a-writable-root-filesystem",
    ),
    pytest.param(
        CHART / "templates" / "deployment-agent.yaml",
        "type: Recreate",
        "type: RollingUpdate",
        ["Deployment ffe-agent: strategy 'RollingUpdate', not Recreate"],
        id="the-agent-rolling",
    ),
    pytest.param(
        CHART / "templates" / "deployment-worker.yaml",
        'ray start --address="$FFE__COMPUTE__RAY_ADDRESS" --num-cpus=0',
        "true",
        ["Deployment ffe-worker does not join the cluster as a node"],
        id="the-ray-driver-joining-no-node",
    ),
    pytest.param(
        CHART / "templates" / "deployment-api.yaml",
        "  revisionHistoryLimit: 5\n",
        "  revisionHistoryLimit: 5\n  surgeLimit: 2\n",
        ["kubernetes-validate: ERROR", "deployment/ffe-api", "'surgeLimit' was unexpected"],
        id="kubernetes-validate-names-an-unknown-field",
    ),
    pytest.param(
        Path("deploy") / "argocd" / "application.yaml",
        "prune: true",
        "prune: false",
        ["application.yaml: wants spec.syncPolicy.automated.prune true"],
        id="argo-cd-not-pruning",
    ),
    pytest.param(
        CHART / "values-production.yaml",
        "clusterIssuer: letsencrypt-production",
        'clusterIssuer: ""',
        ["production's Ingress has no TLS through cert-manager"],
        id="production-without-a-cluster-issuer",
    ),
    pytest.param(
        CHART / "templates" / "autoscaling-keda.yaml",
        'query: max(ffe_job_queue_depth{namespace="{{ .Release.Namespace }}"})',
        "query: max(ffe_job_queue_depth)",
        [
            "production: ScaledObject ffe-worker: prometheus query 'max(ffe_job_queue_depth)' "
            'does not select {namespace="ffe-production"}'
        ],
        id="a-keda-query-reading-every-namespace",
    ),
    pytest.param(
        CHART / "templates" / "autoscaling-hpa.yaml",
        "name: ffe_job_queue_depth_max\n"
        "          selector:\n"
        "            matchLabels:\n"
        "              namespace: {{ .Release.Namespace }}\n",
        "name: ffe_job_queue_depth_max\n",
        [
            "production+hpa+ray: HorizontalPodAutoscaler ffe-worker: External metric "
            "ffe_job_queue_depth_max does not select namespace ffe-production"
        ],
        id="an-hpa-metric-reading-every-namespace",
    ),
]


@pytest.mark.parametrize(("path", "old", "new", "said"), BROKEN)
def test_helm_check_when_a_value_is_broken_then_fails_naming_it(
    tmp_path: Path, path: Path, old: str, new: str, said: list[str]
) -> None:
    output = broken("helm", path, old, new, into=tmp_path)

    assert not [message for message in said if message not in output], output


def test_helm_check_when_the_ingress_has_no_trusted_proxies_then_names_the_key_and_why(
    tmp_path: Path,
) -> None:
    output = broken(
        "helm",
        CHART / "values-staging.yaml",
        '  trustedProxies: ["10.0.0.0/8"]\n',
        "  trustedProxies: []\n",
        into=tmp_path,
    )

    assert (
        "staging: Deployment ffe-api sits behind the rendered Ingress but api.trustedProxies "
        "is empty" in output
    )
    assert "rate limits and the login lockout" in output
    assert "HSTS" in output
    assert "production: Deployment ffe-api sits" not in output  # production still sets it


def test_helm_check_when_the_rule_files_are_gone_then_the_prometheus_rule_fails(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    for rules in _rule_files(root):
        rules.unlink()

    output = failing("helm", root)

    assert "no rule groups in monitoring/rules/*.yml" in output


def test_helm_check_when_the_prometheus_rule_skips_a_rule_file_then_fails(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    _add_rule_file(root)
    break_value(
        root / CHART / "templates" / "prometheusrule.yaml",
        '"monitoring/rules/*.yml" }}',
        '"monitoring/rules/[a-y]*.yml" }}',
    )

    output = failing("helm", root)

    assert "PrometheusRule ffe: groups" in output
    assert "are not those of deploy/monitoring/rules/*.yml" in output
    assert "'ffe-extra'" in output


def test_helm_check_when_a_rule_file_is_added_then_the_prometheus_rule_has_it(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    _add_rule_file(root)

    output = passing("helm", root)

    groups = sum(len(yaml.safe_load(each.read_text())["groups"]) for each in _rule_files(ROOT))
    assert f"PrometheusRule: the {groups + 1} groups of deploy/monitoring/rules" in output
