"""The root of the stack file's `hyperscaler:cluster` key."""

from __future__ import annotations

from typing import Literal

from config.impact import Impact, setting
from config.models.base import Model
from config.models.containers import Containers
from config.models.hosts import Host
from config.models.monitoring import Monitoring
from config.models.network import Networks
from config.models.nodes import BaseImage, ComputeGroup, Controller, ImageMap, Ssh, StorageGroup
from config.models.services import Mig, Slurm
from config.types import Hostname

# Debian 12's generic cloud image, downloaded by the admin and checked against Debian's SHA512SUMS
# (docs/images.md): a local file the admin vouches for, so it is marked trusted. Any other image is
# pinned by its sha256, or comes from the manifest `make images` writes.
DEFAULT_IMAGE_PATH = "/var/lib/hyperscaler/images/debian-12-genericcloud-amd64.qcow2"
DEFAULT_IMAGES = {
    "debian-12": BaseImage(
        source=DEFAULT_IMAGE_PATH,
        trusted=True,
        virtual_size_gib=2,  # Debian's cloud images are 2 GiB disks; cloud-init grows the root fs to the volume
    )
}


class ClusterSpec(Model):
    preset: Literal["dev", "workstation", "cluster"] | None = setting(
        None, impact=Impact.IN_PLACE, doc="Size preset whose values this stack overrides (dev, workstation, cluster)."
    )
    name: Hostname = setting(impact=Impact.REPLACE_VM, doc="Cluster name: SLURM ClusterName and libvirt name prefix.")
    hosts: list[Host] = setting(impact=Impact.REPLACE_VM, doc="Hypervisor hosts.", min_length=1)
    networks: Networks = setting(Networks(), impact=Impact.REPLACE_VM, doc="Cluster networks.")
    ssh: Ssh = setting(impact=Impact.REPLACE_VM, doc="Admin access to every node.")
    images: ImageMap = setting(DEFAULT_IMAGES, impact=Impact.REPLACE_VM, doc="Base images by name (docs/images.md).")
    controller: Controller = setting(Controller(), impact=Impact.REPLACE_VM, doc="The SLURM controller VM.")
    compute: list[ComputeGroup] = setting(
        [],
        impact=Impact.SCALE,
        doc="Compute node groups: a new group creates its nodes, a removed one drains and removes them.",
    )
    storage: StorageGroup | None = setting(
        StorageGroup(),
        impact=Impact.REPLACE_VM,
        doc="Storage nodes and the shared file system they serve; null for none.",
    )
    slurm: Slurm = setting(Slurm(), impact=Impact.RECONFIGURE, doc="SLURM settings.")
    mig: Mig = setting(Mig(), impact=Impact.RECONFIGURE, doc="MIG partitioning.")
    containers: Containers = setting(Containers(), impact=Impact.RECONFIGURE, doc="Container runtime.")
    monitoring: Monitoring = setting(Monitoring(), impact=Impact.RECONFIGURE, doc="Monitoring stack.")

    def needs_jump_host(self, host: Host) -> bool:
        """Nodes behind libvirt's NAT on a remote host are reached through that host over SSH."""
        return self.networks.management.mode != "bridge" and host.ssh_login is not None

    def host(self, name: str | None) -> Host | None:
        if name is None:
            return self.hosts[0]
        return next((h for h in self.hosts if h.name == name), None)
