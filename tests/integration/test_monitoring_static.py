"""Every monitoring file the program renders passes the real tools, and a seeded mistake fails each of them.

- Prometheus 2.42 (Debian 12): `promtool check config` (rule files and file_sd target files included, at
  the absolute paths the configuration names: the check runs in a private mount namespace where
  /etc/prometheus is the rendered tree), `promtool check rules`, and `promtool test rules` with
  tests/fixtures/monitoring/rules_test.yml, a unit test for every alert.
- Alertmanager 0.25: `amtool check-config` for each receiver, and `amtool config routes test` that an
  alert reaches the receiver the stack chose.
- Grafana dashboards: grafana-foundation-sdk's strict Go decoder (tests/tools/dashboard_check), with
  every panel and query plugin registered. No Grafana server runs here; docs/monitoring.md says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from config.models import ClusterSpec
from config.topology import plan_nodes
from render.grafana import dashboards
from render.monitoring import (
    PROMETHEUS_YML,
    RULES_FILE,
    alert_groups,
    dcgm_targets,
    node_targets,
    render_alertmanager_yml,
    render_prometheus_yml,
    render_rules,
)
from tests.stacks import STACKS, loaded
from tests.tools.dashboard_check.build import dashboard_checker

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "monitoring"
MONITORED = [s for s in STACKS if loaded(s).spec.monitoring.enabled]
EMAIL = {
    "receiver": "email",
    "email": {
        "to": ["ops@example.com", "hpc@example.com"],
        "sender": "alertmanager@example.com",
        "smarthost": "smtp.example.com:587",
        "auth_username": "alertmanager",
    },
}
WEBHOOK = {"receiver": "webhook", "webhook": {"url": "https://hooks.example.com/hpc", "bearer_token": True}}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run `make deps` (packages.apt lists prometheus and prometheus-alertmanager)"
    return path


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)


def with_alerts(stack: str, **alerts: object) -> ClusterSpec:
    raw = loaded(stack).spec.model_dump()
    raw["monitoring"]["alerts"].update(alerts)
    return ClusterSpec.model_validate(raw)


def with_beegfs(spec: ClusterSpec) -> ClusterSpec:
    """A stack whose shared storage is BeeGFS: SharedStorageServiceDown watches the BeeGFS units."""
    assert spec.storage is not None
    storage = spec.storage.model_copy(update={"backend": "beegfs", "count": max(1, spec.storage.count)})
    return spec.model_copy(update={"storage": storage})


def prometheus_tree(spec: ClusterSpec, root: Path) -> Path:
    """/etc/prometheus as the controller gets it: configuration, rules and every node's target files."""
    etc = root / "etc-prometheus"
    files = {PROMETHEUS_YML: render_prometheus_yml(spec), RULES_FILE: render_rules(spec)}
    for node in plan_nodes(spec):
        for target in (node_targets(node), dcgm_targets(node)):
            if target is not None:
                files[target.path] = target.content
    for path, text in files.items():
        local = etc / Path(path).relative_to("/etc/prometheus")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(text)
    return etc


def check_config(etc: Path) -> subprocess.CompletedProcess[str]:
    """promtool on the rendered /etc/prometheus, at its real path, without touching the host's."""
    script = 'mount --bind "$1" /etc/prometheus && exec "$2" check config /etc/prometheus/prometheus.yml'
    return run("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(etc), tool("promtool"))


@pytest.mark.parametrize("stack", MONITORED)
def test_prometheus_config_rules_and_targets_pass_promtool(stack: str, tmp_path: Path) -> None:
    spec = loaded(stack).spec
    result = check_config(prometheus_tree(spec, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(g["rules"]) for g in alert_groups(spec))
    assert f"SUCCESS: {rules} rules found" in result.stdout + result.stderr, result.stdout + result.stderr


def test_a_bad_target_file_fails_promtool(tmp_path: Path) -> None:
    etc = prometheus_tree(loaded("workstation").spec, tmp_path)
    (etc / "targets/node/gpu-01.json").write_text('[{"targets": ["10.77.0.100:9100"], "labels": {"node": 1}}]')
    result = check_config(etc)
    assert result.returncode != 0 and "SD file" in result.stdout + result.stderr, result.stdout + result.stderr


def test_a_bad_config_fails_promtool(tmp_path: Path) -> None:
    etc = prometheus_tree(loaded("workstation").spec, tmp_path)
    config = etc / "prometheus.yml"
    config.write_text(config.read_text().replace("scrape_interval: 30s", "scrape_interval: 30 seconds"))
    assert check_config(etc).returncode != 0


def test_rules_pass_promtool_and_a_broken_expression_fails(tmp_path: Path) -> None:
    rules = tmp_path / "hyperscaler.yml"
    rules.write_text(render_rules(with_beegfs(loaded("workstation").spec)))
    assert run(tool("promtool"), "check", "rules", str(rules)).returncode == 0
    rules.write_text(rules.read_text().replace('up{job="node"} == 0', 'up{job="node" == 0'))
    result = run(tool("promtool"), "check", "rules", str(rules))
    assert result.returncode != 0 and "NodeDown" in result.stdout + result.stderr


def unit_test_dir(tmp_path: Path, rules: str) -> Path:
    shutil.copy(FIXTURES / "rules_test.yml", tmp_path / "rules_test.yml")
    (tmp_path / "hyperscaler.yml").write_text(rules)
    return tmp_path


def test_every_alert_passes_its_unit_test(tmp_path: Path) -> None:
    spec = with_beegfs(loaded("workstation").spec)
    alerts = {r["alert"] for g in alert_groups(spec) for r in g["rules"]}
    tested = {t["alertname"] for case in yaml.safe_load((FIXTURES / "rules_test.yml").read_text())["tests"]
              for t in case["alert_rule_test"]}  # fmt: skip
    assert tested == alerts, f"alerts without a unit test: {alerts - tested}; tests of no alert: {tested - alerts}"
    result = run(tool("promtool"), "test", "rules", "rules_test.yml", cwd=unit_test_dir(tmp_path, render_rules(spec)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    rules = render_rules(with_beegfs(loaded("workstation").spec)).replace(
        "DCGM_FI_DEV_GPU_TEMP > 85", "DCGM_FI_DEV_GPU_TEMP > 95"
    )
    result = run(tool("promtool"), "test", "rules", "rules_test.yml", cwd=unit_test_dir(tmp_path, rules))
    assert result.returncode != 0 and "GpuTooHot" in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("alerts", [{}, EMAIL, WEBHOOK], ids=["none", "email", "webhook"])
def test_alertmanager_config_passes_amtool_and_routes_to_the_receiver(
    alerts: dict[str, object], tmp_path: Path
) -> None:
    spec = with_alerts("workstation", **alerts)
    config = tmp_path / "alertmanager.yml"
    config.write_text(render_alertmanager_yml(spec))
    check = run(tool("amtool"), "check-config", str(config))
    assert check.returncode == 0, check.stdout + check.stderr
    receiver = spec.monitoring.alerts.receiver
    route = run(
        tool("amtool"), "config", "routes", "test", f"--config.file={config}", f"--verify.receivers={receiver}",
        "alertname=NodeDown", "node=gpu-01", "severity=critical",
    )  # fmt: skip
    assert route.returncode == 0, route.stdout + route.stderr
    assert "[secret]" not in config.read_text() and "password:" not in config.read_text()


def test_a_bad_alertmanager_config_fails_amtool(tmp_path: Path) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(render_alertmanager_yml(loaded("workstation").spec).replace("receiver: none", "receiver: nobody"))
    assert run(tool("amtool"), "check-config", str(config)).returncode != 0


@pytest.fixture(scope="module")
def checker() -> Path:
    return dashboard_checker()


@pytest.mark.parametrize("stack", MONITORED)
def test_dashboards_pass_the_strict_grafana_decoder(stack: str, checker: Path, tmp_path: Path) -> None:
    paths = []
    for name, text in dashboards(with_beegfs(loaded(stack).spec)).items():
        path = tmp_path / name
        path.write_text(text)
        paths.append(str(path))
    result = run(str(checker), *paths)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok\n") == 4, result.stdout


@pytest.mark.parametrize(
    ("mistake", "reported"),
    [
        ("unknown field", "unexpected field 'thresold'"),
        ("wrong type", "gridPos.h: json: cannot unmarshal string"),
        ("missing required field", "schemaVersion: required field is missing"),
        ("unknown panel option", "unexpected field 'bogus'"),
    ],
)
def test_the_strict_decoder_catches_a_seeded_mistake(
    mistake: str, reported: str, checker: Path, tmp_path: Path
) -> None:
    board = json.loads(dashboards(loaded("workstation").spec)["nodes.json"])
    panel = board["panels"][2]
    if mistake == "unknown field":
        panel["thresold"] = 1
    elif mistake == "wrong type":
        panel["gridPos"]["h"] = "8"
    elif mistake == "missing required field":
        del board["schemaVersion"]
    else:
        panel["options"] = {"legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"}, "bogus": 1}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(board))
    result = run(str(checker), str(path))
    assert result.returncode == 1 and reported in result.stdout, result.stdout + result.stderr
