"""The Debian packages each node role needs: the one list that the install step, the role images and
the test images all read.

A node's `packages` step (render/scripts/packages.sh) installs what is missing from this list and
skips what its image already carries, so a stock Debian cloud image and a prebuilt role image end in the
same state. Packages are Debian 12's own (bookworm main).
"""

from __future__ import annotations

from config.models import ClusterSpec
from config.topology import NodePlan, Role

# What every role needs whatever the stack says.
ROLE_PACKAGES: dict[Role, tuple[str, ...]] = {
    Role.CONTROLLER: ("munge", "slurm-client", "slurmctld"),
    Role.COMPUTE: ("munge", "slurm-client", "slurmd"),
    Role.STORAGE: (),
}
ACCOUNTING_PACKAGES = ("mariadb-server", "slurmdbd")  # controller, when slurm.accounting.enabled
DNS_PACKAGES = ("dnsmasq",)  # controller, when it serves the cluster's names (bridged management network)
# When monitoring.enabled: Prometheus and Alertmanager on the controller, node-exporter on every node.
MONITORING_CONTROLLER_PACKAGES = ("prometheus", "prometheus-alertmanager")
MONITORING_NODE_PACKAGES = ("prometheus-node-exporter",)


def packages_for(spec: ClusterSpec, node: NodePlan) -> tuple[str, ...]:
    """Sorted, so the install step's parameters (and its trigger) only change when the set does."""
    wanted = set(ROLE_PACKAGES[node.role])
    if node.role is Role.CONTROLLER and spec.slurm.accounting.enabled:
        wanted.update(ACCOUNTING_PACKAGES)
    if node.role is Role.CONTROLLER and spec.networks.management.mode == "bridge":
        wanted.update(DNS_PACKAGES)
    if spec.monitoring.enabled:
        wanted.update(MONITORING_NODE_PACKAGES)
        if node.role is Role.CONTROLLER:
            wanted.update(MONITORING_CONTROLLER_PACKAGES)
    return tuple(sorted(wanted))


def every_package() -> tuple[str, ...]:
    """Everything any role may need: what a test image or an all-in-one image carries."""
    extras = (*ACCOUNTING_PACKAGES, *DNS_PACKAGES, *MONITORING_CONTROLLER_PACKAGES, *MONITORING_NODE_PACKAGES)
    return tuple(sorted({p for pkgs in ROLE_PACKAGES.values() for p in pkgs} | set(extras)))
