"""The packages each node needs: the one list that the install step, the role images and the test images
all read.

A node's `packages` step (render/scripts/packages.sh) installs what is missing from this list and
skips what its image already carries, so a stock Debian cloud image and a prebuilt role image end in the
same state. Debian packages are Debian 12's own (bookworm main); BeeGFS's come from ThinkParQ's apt
repository, or the site mirror the stack names, pinned by its signing key.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.container_facts import docker_node, registry_on
from config.mig import node_mig
from config.models import ClusterSpec
from config.models.repository import AptRepository
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
NFS_SERVER_PACKAGES = ("nfs-kernel-server",)
NFS_CLIENT_PACKAGES = ("nfs-common",)
# What the node needs to add a signed third-party repository (gpg to check the key's fingerprint).
REPOSITORY_TOOLS = ("ca-certificates", "curl", "gpg")
BEEGFS_VOLUME_TOOLS = ("xfsprogs",)  # storage targets are XFS, as BeeGFS recommends
# containers.enabled: Docker Engine (Debian's docker.io) where config/container_facts.py puts it, and
# Debian's docker-registry on the controller; the NVIDIA toolkit, Enroot, Pyxis and Apptainer come from
# the repositories of the containers section, in their own steps.
DOCKER_PACKAGES = ("docker.io",)
REGISTRY_PACKAGES = ("docker-registry",)
# From ThinkParQ's repository (docs/storage.md cites the package names per release).
BEEGFS_SERVER = {"8": ("beegfs-meta", "beegfs-storage"), "7.4": ("beegfs-meta", "beegfs-storage")}
BEEGFS_MGMTD = {"8": ("beegfs-mgmtd", "beegfs-tools"), "7.4": ("beegfs-mgmtd", "beegfs-utils")}
BEEGFS_CLIENT = {
    "8": ("beegfs-client-dkms", "beegfs-tools"),
    "7.4": ("beegfs-client-dkms", "beegfs-helperd", "beegfs-utils"),
}
# MIG nodes: the NVIDIA driver and MIG manager come from mig.software.repository, in the mig step, which
# adds the repository with the same tools.


@dataclass(frozen=True)
class NodePackages:
    debian: tuple[str, ...]  # from the image's own Debian sources
    repository: AptRepository | None = None  # a third-party repository, added first
    from_repository: tuple[str, ...] = ()  # installed once the repository is there

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(sorted({*self.debian, *self.from_repository}))


def packages_for(spec: ClusterSpec, node: NodePlan, mgmtd: NodePlan | None = None) -> NodePackages:
    """Sorted, so the install step's parameters (and its trigger) only change when the set does. `mgmtd`
    is the node that runs BeeGFS's management service (config/storage_layout.py: mgmtd_node)."""
    wanted = set(ROLE_PACKAGES[node.role])
    if node.role is Role.CONTROLLER and spec.slurm.accounting.enabled:
        wanted.update(ACCOUNTING_PACKAGES)
    if node.role is Role.CONTROLLER and spec.networks.management.mode == "bridge":
        wanted.update(DNS_PACKAGES)
    if node_mig(spec, node) is not None:
        wanted.update(REPOSITORY_TOOLS)
    if docker_node(spec, node):
        wanted.update(DOCKER_PACKAGES)
    if node.role is Role.CONTROLLER and registry_on(spec):
        wanted.update(REGISTRY_PACKAGES)
    if spec.monitoring.enabled:
        wanted.update(MONITORING_NODE_PACKAGES)
        if node.role is Role.CONTROLLER:
            wanted.update(MONITORING_CONTROLLER_PACKAGES)
    storage = spec.storage
    if storage is None or not storage.count:
        return NodePackages(tuple(sorted(wanted)))
    if storage.backend == "nfs":
        wanted.update(NFS_SERVER_PACKAGES if node.role is Role.STORAGE else NFS_CLIENT_PACKAGES)
        return NodePackages(tuple(sorted(wanted)))
    beegfs = storage.beegfs
    extra: set[str] = set()
    if node.role is Role.STORAGE:
        wanted.update(BEEGFS_VOLUME_TOOLS)
        extra.update(BEEGFS_SERVER[beegfs.version])
    else:
        extra.update(BEEGFS_CLIENT[beegfs.version])
    if mgmtd is not None and node.name == mgmtd.name:
        extra.update(BEEGFS_MGMTD[beegfs.version])
    wanted.update(REPOSITORY_TOOLS)
    return NodePackages(tuple(sorted(wanted)), beegfs.apt, tuple(sorted(extra)))


# What else a node of each role may need from Debian, whatever its stack says: a role image carries it, so
# the packages step finds everything there (BeeGFS's packages come from ThinkParQ at `up`).
_ROLE_IMAGE_EXTRAS: dict[Role, tuple[tuple[str, ...], ...]] = {
    Role.CONTROLLER: (
        ACCOUNTING_PACKAGES,
        DNS_PACKAGES,
        NFS_CLIENT_PACKAGES,
        REPOSITORY_TOOLS,
        MONITORING_CONTROLLER_PACKAGES,
        MONITORING_NODE_PACKAGES,
        DOCKER_PACKAGES,
        REGISTRY_PACKAGES,
    ),
    Role.COMPUTE: (NFS_CLIENT_PACKAGES, REPOSITORY_TOOLS, MONITORING_NODE_PACKAGES, DOCKER_PACKAGES),
    Role.STORAGE: (NFS_SERVER_PACKAGES, BEEGFS_VOLUME_TOOLS, REPOSITORY_TOOLS, MONITORING_NODE_PACKAGES),
}


def role_image_packages(role: Role) -> NodePackages:
    """The packages a role image is built with (images/, make images): the role's list plus every optional
    Debian package packages_for may add for that role. The image build runs the same packages step on it."""
    wanted = {*ROLE_PACKAGES[role], *(p for extra in _ROLE_IMAGE_EXTRAS[role] for p in extra)}
    return NodePackages(tuple(sorted(wanted)))


def every_package() -> tuple[str, ...]:
    """Every Debian package any role may need (every role image's): what a test image or an all-in-one
    image carries (BeeGFS's come from a third-party repository and are not in it)."""
    return tuple(sorted({p for role in Role for p in role_image_packages(role).all}))
