"""Protected data volumes inside a VM: how each is found (by its disk serial), formatted once and mounted."""

from __future__ import annotations

from dataclasses import dataclass

from config.models import ClusterSpec
from config.topology import NodePlan
from render.common import RenderedFile
from render.placement import data_disk_serial
from render.remote import render_script

STATE_MOUNT = "/var/lib/hyperscaler/state"  # the controller's protected state volume
VOLUME_ROOT = "/srv/hyperscaler"  # where a storage node mounts its data volumes: /srv/hyperscaler/data-1


@dataclass(frozen=True)
class VolumeMount:
    suffix: str  # the volume's suffix in config/topology.py (state, data-1, meta)
    mount: str
    fstype: str  # ext4 | xfs

    @property
    def device(self) -> str:
        return f"/dev/disk/by-id/virtio-{data_disk_serial(self.suffix)}"

    @property
    def args(self) -> tuple[str, str, str, str]:
        return (self.device, self.mount, self.fstype, data_disk_serial(self.suffix))


def volume_mounts(spec: ClusterSpec, node: NodePlan) -> tuple[VolumeMount, ...]:
    """Where each protected volume of a node is mounted, and with which file system: the controller's
    state volume; a storage node's data volumes (XFS as BeeGFS targets, ext4 for NFS) and meta volume."""
    mounts = []
    for volume in node.volumes:
        if volume.suffix == "state":
            mounts.append(VolumeMount("state", STATE_MOUNT, "ext4"))
        elif volume.suffix == "meta":
            mounts.append(VolumeMount("meta", f"{VOLUME_ROOT}/meta", "ext4"))  # BeeGFS advises ext4 for metadata
        else:
            beegfs = spec.storage is not None and spec.storage.backend == "beegfs"
            mounts.append(VolumeMount(volume.suffix, f"{VOLUME_ROOT}/{volume.suffix}", "xfs" if beegfs else "ext4"))
    return tuple(mounts)


def data_volume_script() -> RenderedFile:
    """One script for every volume (its volume is an argument): steps on one node may run it at once."""
    return render_script("data-volume", {})
