"""SharedStorage: the file system every node mounts, served by the storage nodes (docs/storage.md).

NFS: the first storage node exports its first data volume (formatted and mounted by NodeVolumes) to the
management network; the controller and every compute node mount it. BeeGFS: components/beegfs.py.
Either way a client's mount names only the server, so adding a compute node adds its own mount and
touches no other node.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command.remote as remote

from components.beegfs import BeegfsServices, BeegfsServicesArgs
from components.identity import token, with_aliases
from components.remote import NodeAccess, run_script
from config.models import ClusterSpec
from config.storage_layout import uses
from config.topology import NodePlan, Role
from render.storage import NFS_OPTIONS, nfs_export, render_nfs_server_script, render_shared_mount_script


@dataclass(frozen=True)
class SharedStorageArgs:
    spec: ClusterSpec
    nodes: list[NodePlan]
    access: dict[str, NodeAccess]


class SharedStorage(pulumi.ComponentResource):
    mounts: dict[str, remote.Command]  # client node -> its mount step: what jobs need before they run

    def __init__(self, name: str, args: SharedStorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("SharedStorage"), name, None, with_aliases("SharedStorage", opts))
        spec, nodes, access = args.spec, args.nodes, args.access
        clients = [n for n in nodes if n.role in (Role.CONTROLLER, Role.COMPUTE)]
        self.mounts = {}
        if uses(spec, "nfs"):
            export = nfs_export(spec, nodes)
            server = access[export.server.name]  # waits for the server's volumes (components/volumes.py)
            serving = run_script(
                f"{name}-{export.server.name}-nfs", render_nfs_server_script(spec, export), [], server, self
            )
            mount = render_shared_mount_script(spec, export.source, "nfs4", NFS_OPTIONS)
            for client in clients:
                self.mounts[client.name] = run_script(
                    f"{name}-{client.name}-mount", mount, [], access[client.name], self, [serving]
                )
        elif uses(spec, "beegfs"):
            beegfs = BeegfsServices(
                f"{name}-beegfs", BeegfsServicesArgs(spec, nodes, access), pulumi.ResourceOptions(parent=self)
            )
            self.mounts = beegfs.mounts
        self.register_outputs({})
