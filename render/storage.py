"""The shared file system's files and scripts: NFS here, BeeGFS in render/beegfs.py. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from config.models import ClusterSpec
from config.storage_layout import storage_nodes
from config.topology import NodePlan
from render.common import RenderedFile
from render.remote import render_script
from render.volumes import VolumeMount, volume_mounts

NFS_OPTIONS = "_netdev,nofail,hard,noatime,vers=4.2"
MOUNT_WAIT_S = 300  # how long a client waits for the server at the first mount


@dataclass(frozen=True)
class NfsExport:
    server: NodePlan
    volume: VolumeMount
    directory: str  # exported: the data volume's `shared` directory

    @property
    def source(self) -> str:
        return f"{self.server.mgmt_ip}:{self.directory}"


def nfs_export(spec: ClusterSpec, nodes: list[NodePlan]) -> NfsExport:
    """NFS serves the first storage node's first data volume (checks refuse more for nfs)."""
    server = storage_nodes(nodes)[0]
    volume = next(v for v in volume_mounts(spec, server) if v.suffix == "data-1")
    return NfsExport(server, volume, f"{volume.mount}/shared")


def render_nfs_exports(spec: ClusterSpec, export: NfsExport) -> RenderedFile:
    """The export, to the management network only; the nfs-server step writes it."""
    storage = spec.storage
    assert storage is not None
    squash = "root_squash" if storage.nfs.root_squash else "no_root_squash"
    line = f"{export.directory} {spec.networks.management.cidr}(rw,sync,no_subtree_check,{squash})"
    return RenderedFile("/etc/exports.d/hyperscaler.exports", line + "\n")


def render_nfs_server_script(spec: ClusterSpec, export: NfsExport) -> RenderedFile:
    exports = render_nfs_exports(spec, export)
    params = {
        "VOLUME_MOUNT": export.volume.mount,
        "EXPORT_DIR": export.directory,
        "EXPORTS_FILE": exports.path,
        "EXPORT": exports.content.rstrip("\n"),
    }
    return render_script("nfs-server", params)


def shared_mount_line(spec: ClusterSpec, source: str, fstype: str, options: str) -> str:
    """The client's /etc/fstab line for the shared file system."""
    storage = spec.storage
    assert storage is not None
    return f"{source} {storage.mount_point} {fstype} {options} 0 0"


def render_shared_mount_script(spec: ClusterSpec, source: str, fstype: str, options: str) -> RenderedFile:
    """Every client gets the same script: it names the server, never the other clients."""
    storage = spec.storage
    assert storage is not None
    params = {
        "LINE": shared_mount_line(spec, source, fstype, options),
        "MOUNT": storage.mount_point,
        "WAIT": MOUNT_WAIT_S,
    }
    return render_script("shared-mount", params)
