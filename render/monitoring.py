"""Prometheus, its alert rules, Alertmanager and the scrape targets, rendered from the spec. Pure.

Scrape targets are file_sd files, one per node and job (`targets/<job>/<node>.json`): adding a node adds
its own file on the controller, which Prometheus picks up without a reload, and no file names every node.
docs/monitoring.md explains every alert; each rule's `runbook` annotation points at its section there.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from config.models import ClusterSpec
from config.monitoring_facts import (
    ALERTMANAGER_PORT,
    DCGM_EXPORTER_PORT,
    NODE_EXPORTER_PORT,
    PROMETHEUS_ETC,
    PROMETHEUS_PORT,
    STORAGE_SERVICE_UNITS,
    TEXTFILE_DIR,
)
from config.topology import NodePlan
from render.access import ssh_route
from render.common import HEADER_NOTE, RenderedFile, dump_yaml
from render.volumes import STATE_MOUNT

PROMETHEUS_YML = f"{PROMETHEUS_ETC}/prometheus.yml"
RULES_DIR = f"{PROMETHEUS_ETC}/rules"
RULES_FILE = f"{RULES_DIR}/hyperscaler.yml"
ALERTMANAGER_YML = f"{PROMETHEUS_ETC}/alertmanager.yml"
# The receiver's password or token, read by Alertmanager from this file: never in alertmanager.yml.
RECEIVER_SECRET_FILE = f"{PROMETHEUS_ETC}/alert-receiver-secret"
TARGETS_DIR = f"{PROMETHEUS_ETC}/targets"
PROMETHEUS_DATA = f"{STATE_MOUNT}/prometheus"
ALERTMANAGER_DATA = f"{STATE_MOUNT}/alertmanager"
SLURM_METRICS = f"{TEXTFILE_DIR}/slurm.prom"
RUNBOOK = "docs/monitoring.md"
NODE_JOB = "node"
DCGM_JOB = "dcgm"
RECEIVERS = ("none", "email", "webhook")

# Filesystems that are not disks: never "filling".
PSEUDO_FS = "tmpfs|ramfs|devtmpfs|overlay|squashfs|fuse[.].*|nsfs|autofs"
# Filesystems every node mounts from elsewhere: alerted once per mount, not once per client.
SHARED_FS = "nfs|nfs4|beegfs"


def duration(seconds: int) -> str:
    """A Prometheus duration: 300 -> 5m, 90 -> 90s, 7200 -> 2h."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def yaml_file(what: str, data: object) -> str:
    return f"{HEADER_NOTE}: {what}. Edit the stack file, not this file: `pulumi up` overwrites it.\n" + dump_yaml(data)


def render_prometheus_yml(spec: ClusterSpec) -> str:
    mon = spec.monitoring
    interval = mon.scrape_interval_s

    def file_sd(job: str) -> dict[str, object]:
        return {"job_name": job, "file_sd_configs": [{"files": [f"{TARGETS_DIR}/{job}/*.json"]}]}

    config = {
        "global": {
            "scrape_interval": duration(interval),
            "scrape_timeout": duration(min(interval, 10)),
            "evaluation_interval": duration(mon.evaluation_interval_s),
            "external_labels": {"cluster": spec.name},
        },
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ALERTMANAGER_PORT}"]}]}]},
        "rule_files": [f"{RULES_DIR}/*.yml"],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{PROMETHEUS_PORT}"]}]},
            {"job_name": "alertmanager", "static_configs": [{"targets": [f"127.0.0.1:{ALERTMANAGER_PORT}"]}]},
            file_sd(NODE_JOB),
            file_sd(DCGM_JOB),
        ],
    }
    return yaml_file("Prometheus on the controller (docs/monitoring.md)", config)


def _alert(name: str, expr: str, pending_s: int, severity: str, summary: str) -> dict[str, object]:
    rule: dict[str, object] = {
        "alert": name,
        "expr": expr,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "runbook": f"{RUNBOOK}#{name.lower()}"},
    }
    if pending_s:
        rule["for"] = duration(pending_s)
    return rule


def alert_groups(spec: ClusterSpec) -> list[dict[str, Any]]:
    alerts = spec.monitoring.alerts
    wait = alerts.pending_s
    free = alerts.disk_free_percent / 100
    # A stale collector: three missed runs, and never less than five minutes.
    stale_s = max(3 * spec.monitoring.scrape_interval_s, 300)
    nodes = [
        _alert(
            "NodeDown",
            f'up{{job="{NODE_JOB}"}} == 0',
            wait,
            "critical",
            "{{ $labels.node }} does not answer: its node-exporter has been unreachable for " + duration(wait),
        ),
        _alert(
            "DiskFilling",
            f'node_filesystem_avail_bytes{{fstype!~"{PSEUDO_FS}|{SHARED_FS}"}}'
            f' / node_filesystem_size_bytes{{fstype!~"{PSEUDO_FS}|{SHARED_FS}"}} < {free}',
            wait,
            "warning",
            "{{ $labels.mountpoint }} on {{ $labels.node }} has less than "
            f"{alerts.disk_free_percent}% free space",
        ),
        _alert(
            "SharedStorageFilling",
            f'max by (mountpoint, fstype) (node_filesystem_avail_bytes{{fstype=~"{SHARED_FS}"}}'
            f' / node_filesystem_size_bytes{{fstype=~"{SHARED_FS}"}}) < {free}',
            wait,
            "warning",
            "the shared filesystem {{ $labels.mountpoint }} ({{ $labels.fstype }}) has less than "
            f"{alerts.disk_free_percent}% free space",
        ),
    ]
    gpus = [
        _alert(
            "GpuXidError",
            "DCGM_FI_DEV_XID_ERRORS > 0",
            0,
            "critical",
            "GPU {{ $labels.gpu }} on {{ $labels.node }} reported XID error {{ $value }}",
        ),
        _alert(
            "GpuTooHot",
            f"DCGM_FI_DEV_GPU_TEMP > {alerts.gpu_temperature_c}",
            wait,
            "warning",
            "GPU {{ $labels.gpu }} on {{ $labels.node }} is at {{ $value }} C, above "
            f"{alerts.gpu_temperature_c} C",
        ),
        _alert(
            "GpuEccErrors",
            "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL > 0",
            0,
            "critical",
            "GPU {{ $labels.gpu }} on {{ $labels.node }} had {{ $value }} uncorrectable (double-bit) ECC errors "
            "since its driver loaded",
        ),
    ]
    slurm = [
        _alert(
            "SlurmNodeDrainedOrDown",
            'slurm_node_state{state=~"drained|draining|down|fail|failing|inval|unknown"} == 1',
            wait,
            "warning",
            "SLURM node {{ $labels.slurm_node }} is {{ $labels.state }}",
        ),
        _alert(
            "SlurmControllerUnreachable",
            "slurm_up == 0",
            wait,
            "critical",
            "slurmctld does not answer sinfo on the controller",
        ),
        _alert(
            "SlurmMetricsStale",
            f'time() - node_textfile_mtime_seconds{{file=~"(.*/)?slurm.prom"}} > {stale_s}',
            0,
            "warning",
            "the SLURM metrics collector on {{ $labels.node }} has not written for " + duration(stale_s),
        ),
        _alert(
            "CanaryFailed",
            "hyperscaler_canary_success == 0",
            0,
            "critical",
            "the last canary (a job on every compute node after `pulumi up`) failed",
        ),
    ]
    groups: list[dict[str, Any]] = [
        {"name": "nodes", "rules": nodes},
        {"name": "gpus", "rules": gpus},
        {"name": "slurm", "rules": slurm},
    ]
    units = storage_units(spec)
    if units:
        storage = [
            _alert(
                "SharedStorageServiceDown",
                f"{units} == 0",
                wait,
                "critical",
                "{{ $labels.name }} on {{ $labels.node }} is not running: the shared file system is degraded",
            )
        ]
        groups.append({"name": "storage", "rules": storage})
    return groups


def storage_units(spec: ClusterSpec) -> str:
    """The series of the shared file system's services being active (1) or not (0), from node-exporter's
    systemd collector; empty without shared storage."""
    if spec.storage is None or not spec.storage.count:
        return ""
    names = "|".join(re.escape(unit) for unit in STORAGE_SERVICE_UNITS[spec.storage.backend])
    # A raw (backquoted) PromQL string: the regex's backslashes reach RE2 as written.
    return f'node_systemd_unit_state{{name=~`{names}`, state="active"}}'


def render_rules(spec: ClusterSpec) -> str:
    return yaml_file("alert rules (runbook: docs/monitoring.md)", {"groups": alert_groups(spec)})


def render_alertmanager_yml(spec: ClusterSpec) -> str:
    alerts = spec.monitoring.alerts
    receiver: dict[str, object] = {"name": alerts.receiver}
    if alerts.receiver == "email" and alerts.email is not None:
        mail = alerts.email
        email: dict[str, object] = {
            "to": ", ".join(mail.to),
            "from": mail.sender,
            "smarthost": mail.smarthost,
            "require_tls": mail.require_tls,
            "send_resolved": True,
        }
        if mail.auth_username is not None:
            email.update(auth_username=mail.auth_username, auth_password_file=RECEIVER_SECRET_FILE)
        receiver["email_configs"] = [email]
    elif alerts.receiver == "webhook" and alerts.webhook is not None:
        hook: dict[str, object] = {"url": alerts.webhook.url, "send_resolved": True}
        if alerts.webhook.bearer_token:
            hook["http_config"] = {"authorization": {"credentials_file": RECEIVER_SECRET_FILE}}
        receiver["webhook_configs"] = [hook]
    # receiver "none" has no configs: Alertmanager keeps and shows alerts, and sends them nowhere.
    config = {
        "route": {
            "receiver": alerts.receiver,
            "group_by": ["alertname", "node"],
            # Alerts that wait little before firing are wanted quickly: never batch them longer than that.
            "group_wait": duration(min(30, alerts.pending_s)),
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "receivers": [receiver],
    }
    return yaml_file(f"Alertmanager, receiver {alerts.receiver} (docs/monitoring.md)", config)


def receiver_needs_secret(spec: ClusterSpec) -> bool:
    alerts = spec.monitoring.alerts
    if alerts.receiver == "email" and alerts.email is not None:
        return alerts.email.auth_username is not None
    if alerts.receiver == "webhook" and alerts.webhook is not None:
        return alerts.webhook.bearer_token
    return False


def receiver_secret_file() -> RenderedFile:
    """Its content is the stack secret, filled in at deploy time; readable by Alertmanager only."""
    return RenderedFile(RECEIVER_SECRET_FILE, "", mode="0640", owner="root:prometheus", secret=True)


def _targets(job: str, node: NodePlan, port: int) -> RenderedFile:
    group = [{"targets": [f"{node.mgmt_ip}:{port}"], "labels": {"node": node.name, "role": node.role.value}}]
    return RenderedFile(f"{TARGETS_DIR}/{job}/{node.name}.json", json.dumps(group, indent=2, sort_keys=True) + "\n")


def node_targets(node: NodePlan) -> RenderedFile:
    """The node's node-exporter, as a file_sd file on the controller."""
    return _targets(NODE_JOB, node, NODE_EXPORTER_PORT)


def dcgm_targets(node: NodePlan) -> RenderedFile | None:
    """A GPU node's DCGM exporter, as a file_sd file on the controller; None for a node without GPUs."""
    return _targets(DCGM_JOB, node, DCGM_EXPORTER_PORT) if node.gpus else None


def retention_size_mib(spec: ClusterSpec) -> int:
    """What Prometheus may keep on the state volume: the setting, or half the volume."""
    size = spec.monitoring.retention_size_gib
    return size * 1024 if size is not None else spec.controller.state_disk_gib * 1024 // 2


def prometheus_args(spec: ClusterSpec) -> str:
    """Prometheus's command line (ARGS in /etc/default/prometheus, which Debian's unit reads)."""
    mon = spec.monitoring
    return " ".join(
        [
            f"--config.file={PROMETHEUS_YML}",
            f"--storage.tsdb.path={PROMETHEUS_DATA}",
            f"--storage.tsdb.retention.time={mon.retention_days}d",
            f"--storage.tsdb.retention.size={retention_size_mib(spec)}MB",  # Prometheus's MB is a MiB
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
            f"--web.external-url=http://localhost:{PROMETHEUS_PORT}/",
        ]
    )


def alertmanager_args() -> str:
    """Alertmanager's command line: loopback only, no cluster gossip (a single Alertmanager)."""
    return " ".join(
        [
            f"--config.file={ALERTMANAGER_YML}",
            f"--storage.path={ALERTMANAGER_DATA}",
            f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
            "--cluster.listen-address=",
            f"--web.external-url=http://localhost:{ALERTMANAGER_PORT}/",
        ]
    )


def node_exporter_args(node: NodePlan) -> str:
    """Listen on the management network only; the textfile directory holds the SLURM and canary metrics."""
    return f"--web.listen-address={node.mgmt_ip}:{NODE_EXPORTER_PORT} --collector.textfile.directory={TEXTFILE_DIR}"


@dataclass(frozen=True)
class Endpoint:
    """A web UI on the controller's loopback, and the SSH tunnel that reaches it from the admin's machine."""

    url: str
    tunnel: str

    def as_output(self) -> dict[str, str]:
        return {"url": self.url, "ssh_tunnel": self.tunnel}


def endpoint(spec: ClusterSpec, ctl: NodePlan, port: int) -> Endpoint:
    route = ssh_route(spec, ctl)
    jump = f" -J {shlex.quote(route.jump)}" if route.jump else ""
    tunnel = f"ssh -N -L {port}:127.0.0.1:{port}{jump} {route.user}@{route.host}"
    return Endpoint(f"http://localhost:{port}/", tunnel)


def endpoints(spec: ClusterSpec, ctl: NodePlan) -> dict[str, Endpoint]:
    """What a user opens in a browser: every one through an SSH tunnel to the controller."""
    return {
        "prometheus": endpoint(spec, ctl, PROMETHEUS_PORT),
        "alertmanager": endpoint(spec, ctl, ALERTMANAGER_PORT),
    }
