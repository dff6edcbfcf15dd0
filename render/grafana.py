"""Grafana's files and the containers pulumi-docker is to run (Grafana on the controller, the DCGM exporter
on GPU nodes). Pure.

Dashboards are built with grafana-foundation-sdk (the release for GRAFANA_IMAGE's Grafana minor version)
and kept as golden files. The files go onto the nodes now (components/monitoring.py); `grafana_container`
and `dcgm_exporter_container` say everything a docker.Container needs: image, command, environment,
mounts, network, devices, and the host directories to create first. Secrets never travel in the
environment: Grafana reads its admin password from a mounted file (GF_..._FILE).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import StackingMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, Panel, Threshold, ThresholdsMode

from config.models import ClusterSpec
from config.monitoring_facts import DCGM_EXPORTER_IMAGE, DCGM_EXPORTER_PORT, GRAFANA_IMAGE, GRAFANA_UID, PROMETHEUS_PORT
from config.topology import NodePlan
from render.common import RenderedFile
from render.monitoring import (
    DCGM_JOB,
    NODE_JOB,
    PSEUDO_FS,
    SHARED_FS,
    Endpoint,
    duration,
    endpoint,
    storage_units,
    yaml_file,
)
from render.volumes import STATE_MOUNT

GRAFANA_ETC = "/etc/hyperscaler/grafana"  # on the controller: what the Grafana container mounts
GRAFANA_DATA = f"{STATE_MOUNT}/grafana"  # its database, on the protected state volume
ADMIN_PASSWORD_FILE = f"{GRAFANA_ETC}/admin-password"
DCGM_ETC = "/etc/hyperscaler/dcgm-exporter"  # on GPU nodes
DCGM_COUNTERS = f"{DCGM_ETC}/counters.csv"
DATASOURCE_UID = "prometheus"
DASHBOARD_FOLDER = "hyperscaler"
# Inside the Grafana container.
IN_PROVISIONING = "/etc/grafana/provisioning"
IN_DASHBOARDS = "/var/lib/hyperscaler-dashboards"
IN_PASSWORD = "/run/secrets/grafana-admin-password"

_DS = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
# What the dashboards and alerts read, in dcgm-exporter's counters format (DCGM field, type, help). The
# ECC counters are not in its default list; DCGM_FI_PROF_GR_ENGINE_ACTIVE is the per-MIG-instance
# utilization (MIG instances carry GPU_I_ID and GPU_I_PROFILE labels).
DCGM_FIELDS = (
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "counter", "Total number of single-bit volatile ECC errors."),
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors."),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors."),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active (per MIG instance)."),
)


def render_dcgm_counters() -> str:
    lines = ["# Managed by hyperscaler: the DCGM fields dcgm-exporter exports (DCGM field, type, help)."]
    lines += [f"{name}, {kind}, {help_text}" for name, kind, help_text in DCGM_FIELDS]
    return "\n".join(lines) + "\n"


def render_datasource_yml(spec: ClusterSpec) -> str:
    """Prometheus on the controller's loopback: Grafana shares the controller's network (host mode)."""
    source = {
        "name": "Prometheus",
        "type": "prometheus",
        "uid": DATASOURCE_UID,
        "access": "proxy",
        "url": f"http://127.0.0.1:{PROMETHEUS_PORT}",
        "isDefault": True,
        "editable": False,
        "jsonData": {"timeInterval": duration(spec.monitoring.scrape_interval_s)},
    }
    return yaml_file("Grafana's Prometheus data source", {"apiVersion": 1, "datasources": [source]})


def render_dashboard_provider_yml() -> str:
    provider = {
        "name": DASHBOARD_FOLDER,
        "orgId": 1,
        "folder": DASHBOARD_FOLDER,
        "type": "file",
        "disableDeletion": True,
        "allowUiUpdates": False,
        "updateIntervalSeconds": 60,
        "options": {"path": IN_DASHBOARDS, "foldersFromFilesStructure": False},
    }
    return yaml_file("Grafana's dashboards, from files", {"apiVersion": 1, "providers": [provider]})


def _query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)


def _timeseries(title: str, unit: str, *queries: prometheus.Dataquery) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).datasource(_DS).unit(unit).span(12).height(8)
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _stat(title: str, expr: str, unit: str = "short") -> stat.Panel:
    return stat.Panel().title(title).datasource(_DS).unit(unit).span(6).height(4).with_target(_query(expr, "", "A"))


def _red_above(value: float) -> dashboard.ThresholdsConfig:
    steps = [Threshold(value=None, color="green"), Threshold(value=value, color="red")]
    return dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)


def _board(uid: str, title: str, description: str, panels: list[Builder[Panel]]) -> str:
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([DASHBOARD_FOLDER])
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .readonly()
    )
    for panel in panels:
        board = board.with_panel(panel)
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def _real_fs(selector: str = "") -> str:
    return f'fstype!~"{PSEUDO_FS}|{SHARED_FS}"{selector}'


def nodes_dashboard(spec: ClusterSpec) -> str:
    rate = "$__rate_interval"
    fs = _real_fs()
    panels: list[Builder[Panel]] = [
        _stat("Nodes up", f'sum(up{{job="{NODE_JOB}"}})'),
        _stat("Nodes down", f'count(up{{job="{NODE_JOB}"}} == 0) or vector(0)').thresholds(_red_above(1)),
        _timeseries(
            "CPU busy",
            "percentunit",
            _query(f'1 - avg by (node) (rate(node_cpu_seconds_total{{mode="idle"}}[{rate}]))', "{{node}}"),
        ),
        _timeseries(
            "Memory used",
            "percentunit",
            _query("1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", "{{node}}"),
        ),
        _timeseries("Load (1 min)", "short", _query("node_load1", "{{node}}")),
        _timeseries(
            "Network",
            "Bps",
            _query(f'sum by (node) (rate(node_network_receive_bytes_total{{device!="lo"}}[{rate}]))', "{{node}} in"),
            _query(
                f'sum by (node) (rate(node_network_transmit_bytes_total{{device!="lo"}}[{rate}]))', "{{node}} out", "B"
            ),
        ),
        _timeseries(
            "Free disk space",
            "percentunit",
            _query(
                f"node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}", "{{node}} {{mountpoint}}"
            ),
        ).thresholds(
            dashboard.ThresholdsConfig()
            .mode(ThresholdsMode.ABSOLUTE)
            .steps(
                [
                    Threshold(value=None, color="red"),
                    Threshold(value=spec.monitoring.alerts.disk_free_percent / 100, color="green"),
                ]
            )
        ),
    ]
    return _board("hyperscaler-nodes", "Nodes", "Every node's node-exporter.", panels)


def gpus_dashboard(spec: ClusterSpec) -> str:
    gpu = "{{node}} GPU {{gpu}}"
    hot = spec.monitoring.alerts.gpu_temperature_c
    panels: list[Builder[Panel]] = [
        _stat("GPU exporters up", f'sum(up{{job="{DCGM_JOB}"}}) or vector(0)'),
        _stat("GPUs with XID errors", "count(DCGM_FI_DEV_XID_ERRORS > 0) or vector(0)").thresholds(_red_above(1)),
        _stat("GPUs with ECC errors", "count(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL > 0) or vector(0)").thresholds(
            _red_above(1)
        ),
        _timeseries("GPU utilization", "percent", _query('DCGM_FI_DEV_GPU_UTIL{GPU_I_ID=""}', gpu)),
        _timeseries(
            "MIG instance utilization",
            "percentunit",
            _query('DCGM_FI_PROF_GR_ENGINE_ACTIVE{GPU_I_ID!=""}', gpu + " {{GPU_I_PROFILE}} #{{GPU_I_ID}}"),
        ),
        _timeseries("GPU temperature", "celsius", _query("DCGM_FI_DEV_GPU_TEMP", gpu)).thresholds(_red_above(hot)),
        _timeseries("Power", "watt", _query("DCGM_FI_DEV_POWER_USAGE", gpu)),
        _timeseries(
            "GPU memory used", "decmbytes", _query("DCGM_FI_DEV_FB_USED", gpu + " {{GPU_I_PROFILE}} {{GPU_I_ID}}")
        ),
        _timeseries(
            "ECC errors",
            "short",
            _query("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", gpu + " uncorrectable"),
            _query("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", gpu + " corrected", "B"),
        ),
    ]
    return _board("hyperscaler-gpus", "GPUs", "dcgm-exporter on GPU nodes; MIG instances by profile and id.", panels)


def slurm_dashboard(spec: ClusterSpec) -> str:
    stacked = common_builders.StackingConfig().mode(StackingMode.NORMAL)
    panels: list[Builder[Panel]] = [
        _stat("slurmctld answers", "max(slurm_up)").thresholds(
            dashboard.ThresholdsConfig()
            .mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=None, color="red"), Threshold(value=1, color="green")])
        ),
        _stat("GPUs allocated", "sum(slurm_node_gpus_allocated) or vector(0)"),
        _stat("GPUs in SLURM", "sum(slurm_node_gpus) or vector(0)"),
        _stat("Last canary", "max(hyperscaler_canary_success)").thresholds(
            dashboard.ThresholdsConfig()
            .mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=None, color="red"), Threshold(value=1, color="green")])
        ),
        _timeseries("Nodes by state", "short", _query("slurm_nodes", "{{state}}")).stacking(stacked),
        _timeseries("Jobs by state and partition", "short", _query("slurm_jobs", "{{partition}} {{state}}")),
        _timeseries(
            "GPU GRES allocated of total",
            "short",
            _query("sum(slurm_node_gpus_allocated)", "allocated"),
            _query("sum(slurm_node_gpus)", "total", "B"),
        ),
        table.Panel()
        .title("Node states")
        .datasource(_DS)
        .span(12)
        .height(8)
        .with_target(_query("slurm_node_state == 1", "{{slurm_node}} {{state}}").instant()),
    ]
    return _board("hyperscaler-slurm", "SLURM", "Nodes, jobs and GPU GRES from sinfo and squeue.", panels)


def storage_dashboard(spec: ClusterSpec) -> str:
    rate = "$__rate_interval"
    local, shared = _real_fs(), f'fstype=~"{SHARED_FS}"'
    panels: list[Builder[Panel]] = [
        _timeseries(
            "Local filesystems: free",
            "percentunit",
            _query(
                f"node_filesystem_avail_bytes{{{local}}} / node_filesystem_size_bytes{{{local}}}",
                "{{node}} {{mountpoint}}",
            ),
        ),
        _timeseries(
            "Shared filesystems: free",
            "percentunit",
            _query(
                f"max by (mountpoint, fstype) (node_filesystem_avail_bytes{{{shared}}}"
                f" / node_filesystem_size_bytes{{{shared}}})",
                "{{mountpoint}} ({{fstype}})",
            ),
        ),
        _timeseries(
            "Disk throughput",
            "Bps",
            _query(f"sum by (node) (rate(node_disk_read_bytes_total[{rate}]))", "{{node}} read"),
            _query(f"sum by (node) (rate(node_disk_written_bytes_total[{rate}]))", "{{node}} written", "B"),
        ),
    ]
    units = storage_units(spec)
    if units:
        panels.append(_timeseries("Shared storage services active", "short", _query(units, "{{node}} {{name}}")))
    return _board("hyperscaler-storage", "Storage", "Local and shared filesystems, disk throughput.", panels)


def dashboards(spec: ClusterSpec) -> dict[str, str]:
    """{file name: dashboard JSON}, one per subject."""
    return {
        "nodes.json": nodes_dashboard(spec),
        "gpus.json": gpus_dashboard(spec),
        "slurm.json": slurm_dashboard(spec),
        "storage.json": storage_dashboard(spec),
    }


def grafana_files(spec: ClusterSpec) -> list[RenderedFile]:
    """Everything the Grafana container mounts, except its admin password (a secret, pushed on its own)."""
    files = [
        RenderedFile(f"{GRAFANA_ETC}/provisioning/datasources/prometheus.yml", render_datasource_yml(spec)),
        RenderedFile(f"{GRAFANA_ETC}/provisioning/dashboards/hyperscaler.yml", render_dashboard_provider_yml()),
    ]
    files += [RenderedFile(f"{GRAFANA_ETC}/dashboards/{name}", text) for name, text in dashboards(spec).items()]
    return files


def admin_password_file() -> RenderedFile:
    """The password itself is a pulumi_random secret, filled in at deploy time; only Grafana's user reads it."""
    return RenderedFile(
        ADMIN_PASSWORD_FILE, "", mode="0400", owner=f"{GRAFANA_UID}:{GRAFANA_UID}", secret=True, dir_mode="0755"
    )


@dataclass(frozen=True)
class Mount:
    source: str  # on the node
    target: str  # in the container
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """What a docker.Container needs, in pulumi-docker's terms."""

    name: str
    image: str
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # never a secret: secrets are mounted files
    mounts: tuple[Mount, ...] = ()
    network_mode: str = "host"  # the node's own addresses: Prometheus on loopback, exporters on management
    user: str | None = None
    gpus: str | None = None  # "all": every GPU, through the NVIDIA container runtime
    capabilities: tuple[str, ...] = ()
    restart: str = "unless-stopped"
    host_dirs: tuple[tuple[str, str, str], ...] = ()  # (path, owner, mode) to create before it starts
    files: tuple[str, ...] = ()  # files on the node it reads (pushed by components/monitoring.py)


def grafana_endpoint(spec: ClusterSpec, ctl: NodePlan) -> Endpoint:
    """Through the SSH tunnel by default; on the management network when grafana.expose is set."""
    port = spec.monitoring.grafana.port
    if spec.monitoring.grafana.expose:
        return Endpoint(f"http://{ctl.mgmt_ip}:{port}/", "")
    return endpoint(spec, ctl, port)


def grafana_container(spec: ClusterSpec, ctl: NodePlan) -> ContainerSpec:
    grafana = spec.monitoring.grafana
    env = {
        "GF_SERVER_HTTP_ADDR": ctl.mgmt_ip if grafana.expose else "127.0.0.1",
        "GF_SERVER_HTTP_PORT": str(grafana.port),
        "GF_SERVER_ROOT_URL": grafana_endpoint(spec, ctl).url,
        "GF_SECURITY_ADMIN_USER": "admin",
        "GF_SECURITY_ADMIN_PASSWORD__FILE": IN_PASSWORD,
        "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "GF_PATHS_PROVISIONING": IN_PROVISIONING,
    }
    mounts = (
        Mount(f"{GRAFANA_ETC}/provisioning", IN_PROVISIONING),
        Mount(f"{GRAFANA_ETC}/dashboards", IN_DASHBOARDS),
        Mount(ADMIN_PASSWORD_FILE, IN_PASSWORD),
        Mount(GRAFANA_DATA, "/var/lib/grafana", read_only=False),
    )
    return ContainerSpec(
        name="grafana",
        image=GRAFANA_IMAGE,
        env=env,
        mounts=mounts,
        user=f"{GRAFANA_UID}:{GRAFANA_UID}",
        host_dirs=((GRAFANA_DATA, f"{GRAFANA_UID}:{GRAFANA_UID}", "0750"),),
        files=(*(f.path for f in grafana_files(spec)), ADMIN_PASSWORD_FILE),
    )


def dcgm_counters_file() -> RenderedFile:
    return RenderedFile(DCGM_COUNTERS, render_dcgm_counters())


def dcgm_exporter_container(node: NodePlan) -> ContainerSpec:
    """dcgm-exporter on a GPU node, on its management address; SYS_ADMIN for the profiling (MIG) fields."""
    return ContainerSpec(
        name="dcgm-exporter",
        image=DCGM_EXPORTER_IMAGE,
        command=("-f", "/etc/dcgm-exporter/hyperscaler.csv", "-a", f"{node.mgmt_ip}:{DCGM_EXPORTER_PORT}"),
        mounts=(Mount(DCGM_COUNTERS, "/etc/dcgm-exporter/hyperscaler.csv"),),
        gpus="all",
        capabilities=("SYS_ADMIN",),
        files=(DCGM_COUNTERS,),
    )
