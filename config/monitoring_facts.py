"""Facts about the monitoring stack that the checks, the renderers and the docs share: ports, paths, the
Debian packages' names and the pinned container images.

Prometheus 2.42, Alertmanager 0.25 and node-exporter 1.5 are Debian 12's packages; their flags and file
formats below are those releases'.
"""

from __future__ import annotations

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
NODE_EXPORTER_PORT = 9100
DCGM_EXPORTER_PORT = 9400  # dcgm-exporter's default listen port
# What already listens on the controller (ssh, DNS, MariaDB, slurmctld, slurmd, slurmdbd, and the above).
CONTROLLER_PORTS = (22, 53, 3306, 6817, 6818, 6819, PROMETHEUS_PORT, ALERTMANAGER_PORT, NODE_EXPORTER_PORT)

# Where the packages read their settings and the textfile collector reads *.prom files.
PROMETHEUS_ETC = "/etc/prometheus"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"

# The systemd units that serve the shared file system, per storage backend (nfs-kernel-server's unit, and
# the units of ThinkParQ's packages). node-exporter's systemd collector, on in Debian's package, reports
# their state wherever they are installed; SharedStorageServiceDown fires when one is not active.
STORAGE_SERVICE_UNITS: dict[str, tuple[str, ...]] = {
    "nfs": ("nfs-server.service",),
    "beegfs": ("beegfs-client.service", "beegfs-meta.service", "beegfs-mgmtd.service", "beegfs-storage.service"),
}

# Images of the containers pulumi-docker is to run (issue 11). The dashboards are generated with the
# grafana-foundation-sdk release for the same Grafana minor version (requirements.txt).
GRAFANA_IMAGE = "docker.io/grafana/grafana-oss:11.6.0"
GRAFANA_UID = 472  # the user the Grafana image runs as: it must read the provisioning files
DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.9-3.6.1-ubuntu22.04"
