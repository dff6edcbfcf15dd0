"""Monitoring under mocks: what it declares where, what waits for what, secrets, and what one added
compute node changes (only that node and the controller's target files)."""

from __future__ import annotations

from config.models import ClusterSpec
from config.presets import apply_preset
from hyperscaler.mocks import Registration, contains_secret
from render.monitoring import RECEIVER_SECRET_FILE
from tests.components.cluster_run import run_cluster

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR test"
WEBHOOK_TOKEN = "webhook-token-test-only"
COMMAND = "command:remote:Command"


def spec_with(count: int = 2, **overrides: object) -> ClusterSpec:
    raw = {
        "preset": "workstation",
        "name": "ws",
        "ssh": {"public_keys": [KEY]},
        "compute": [
            {"name": "gpu", "count": 2, "vcpus": 4, "memory_mib": 16384, "gpus_per_node": 1, "disk_gib": 20},
            {"name": "cpu", "count": count, "vcpus": 2, "memory_mib": 4096, "disk_gib": 20},
        ],
        **overrides,
    }
    return ClusterSpec.model_validate(apply_preset(raw))


def run(spec: ClusterSpec, receiver_secret: str | None = None) -> dict[str, Registration]:
    return run_cluster(spec, receiver_secret)


def commands(records: dict[str, Registration]) -> dict[str, Registration]:
    return {n: r for n, r in records.items() if r.type == COMMAND}


def packages_of(rec: Registration) -> str:
    """The packages step's list, from its script's header."""
    return next(line for line in rec.plain_inputs["stdin"].splitlines() if line.startswith("readonly PACKAGES="))


def host_of(rec: Registration) -> str:
    return str(rec.plain_inputs["connection"]["host"])


def test_every_node_runs_node_exporter_and_the_controller_the_rest() -> None:
    spec = spec_with()
    cmds = commands(run(spec))
    ctl = "10.77.0.10"
    exporters = {host_of(r) for n, r in cmds.items() if n.endswith("-node-exporter")}
    assert exporters == {ctl, "10.77.0.20", "10.77.0.100", "10.77.0.101", "10.77.0.102", "10.77.0.103"}
    dcgm = {n.removeprefix("ws-monitoring-controller-targets-dcgm-") for n in cmds if "-targets-dcgm-" in n}
    assert dcgm == {"gpu-01", "gpu-02"}  # GPU nodes only
    for step in ("prometheus", "alertmanager", "slurm-metrics"):
        assert host_of(cmds[f"ws-monitoring-controller-{step}"]) == ctl
    packages = {host_of(r): packages_of(r) for n, r in cmds.items() if n.startswith("ws-packages-")}
    assert "prometheus prometheus-alertmanager prometheus-node-exporter slurm-client" in packages[ctl]
    assert "prometheus-node-exporter" in packages["10.77.0.100"]
    assert "prometheus-alertmanager" not in packages["10.77.0.100"]


def test_prometheus_waits_for_the_mounted_state_volume_and_its_files() -> None:
    records = run(spec_with())
    step = records["ws-monitoring-controller-prometheus"]
    needs = {
        records[n].urn
        for n in (
            "ws-volumes-controller-state",  # the state volume, mounted
            "ws-monitoring-controller-etc-prometheus-prometheus-yml",
            "ws-monitoring-controller-etc-prometheus-rules-hyperscaler-yml",
        )
    }
    assert needs <= set(step.depends_on)


def test_a_target_file_leaves_with_its_node_and_waits_for_its_exporter() -> None:
    records = run(spec_with())
    target = records["ws-monitoring-controller-targets-node-gpu-02"]
    assert target.plain_inputs["delete"] == "sudo -n sh -c 'rm -f /etc/prometheus/targets/node/gpu-02.json'"
    assert target.delete_before_replace  # a changed target file is removed before the new one is written
    assert records["ws-monitoring-gpu-02-node-exporter"].urn in target.depends_on
    assert "delete" not in records["ws-monitoring-controller-etc-prometheus-prometheus-yml"].plain_inputs


def test_monitoring_off_declares_nothing_of_it() -> None:
    records = run(spec_with(monitoring={"enabled": False}))
    assert not [n for n in records if "-monitoring" in n]
    packages = [packages_of(r) for n, r in commands(records).items() if n.startswith("ws-packages-")]
    assert packages and not [p for p in packages if "prometheus-node-exporter" in p]


def test_passwords_and_tokens_stay_secret() -> None:
    webhook = {"receiver": "webhook", "webhook": {"url": "https://hooks.example.com/x", "bearer_token": True}}
    records = run(spec_with(monitoring={"enabled": True, "alerts": webhook}), receiver_secret=WEBHOOK_TOKEN)
    cmds = commands(records)
    grafana = cmds["ws-monitoring-controller-etc-hyperscaler-grafana-admin-password"]
    token = cmds[f"ws-monitoring-controller-{RECEIVER_SECRET_FILE.strip('/').replace('/', '-')}"]
    for rec in (grafana, token):
        assert contains_secret(rec.inputs["stdin"]) and contains_secret(rec.inputs["triggers"])
    assert token.plain_inputs["stdin"] == WEBHOOK_TOKEN
    assert contains_secret(cmds["ws-monitoring-controller-alertmanager"].inputs["triggers"])
    password = records["ws-monitoring-grafana-admin-password"]
    assert password.type == "random:index/randomPassword:RandomPassword"
    for name, rec in records.items():
        if name not in (grafana.name, token.name, password.name):
            assert WEBHOOK_TOKEN not in str(rec.masked_inputs), name


def changed_commands(before: dict[str, Registration], after: dict[str, Registration]) -> set[str]:
    """Commands the engine would create or replace/update: new ones and those whose inputs differ."""
    old = commands(before)
    return {n for n, r in commands(after).items() if n not in old or old[n].plain_inputs != r.plain_inputs}


def test_one_more_node_changes_only_its_own_monitoring_and_its_target_files() -> None:
    before, after = run(spec_with(count=2)), run(spec_with(count=3))
    changed = {n for n in changed_commands(before, after) if "-monitoring-" in n}
    assert changed == {"ws-monitoring-cpu-03-node-exporter", "ws-monitoring-controller-targets-node-cpu-03"}, changed
    # and no Command of another node, of any component, changes
    others = {host_of(commands(after)[n]) for n in changed_commands(before, after)}
    assert others == {"10.77.0.10", "10.77.0.104"}, others
