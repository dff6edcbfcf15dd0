"""The Debian packages each node role needs: the one list that the install step, the role images and
the test images all read.

A node's `packages` step (render/scripts/packages.sh) installs what is missing from this list and
skips what its image already carries, so a stock Debian cloud image and a prebuilt role image end in the
same state. Packages are Debian 12's own (bookworm main).
"""

from __future__ import annotations

from config.mig import node_mig
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
# MIG nodes: fetch and check the NVIDIA repository's key (mig.sh). The NVIDIA driver and MIG manager are not
# Debian's: they come from mig.software.repository, in the mig step.
MIG_PACKAGES = ("ca-certificates", "curl", "gpg")


def packages_for(spec: ClusterSpec, node: NodePlan) -> tuple[str, ...]:
    """Sorted, so the install step's parameters (and its trigger) only change when the set does."""
    wanted = set(ROLE_PACKAGES[node.role])
    if node.role is Role.CONTROLLER and spec.slurm.accounting.enabled:
        wanted.update(ACCOUNTING_PACKAGES)
    if node.role is Role.CONTROLLER and spec.networks.management.mode == "bridge":
        wanted.update(DNS_PACKAGES)
    if node_mig(spec, node) is not None:
        wanted.update(MIG_PACKAGES)
    return tuple(sorted(wanted))


def every_package() -> tuple[str, ...]:
    """Everything any role may need: what a test image or an all-in-one image carries."""
    extras = (*ACCOUNTING_PACKAGES, *DNS_PACKAGES, *MIG_PACKAGES)
    return tuple(sorted({p for pkgs in ROLE_PACKAGES.values() for p in pkgs} | set(extras)))
