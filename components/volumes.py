"""NodeVolumes: every protected volume inside its VM, formatted once and mounted, before anything uses it.

The controller's state volume (SLURM's state, the accounting database, BeeGFS's management data) and a
storage node's data and metadata volumes (render/volumes.py says where and with which file system).
Every Command on a node waits for them, as for its packages."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pulumi

from components.identity import token, with_aliases
from components.remote import NodeAccess, run_script
from config.models import ClusterSpec
from config.topology import NodePlan
from render.volumes import data_volume_script, volume_mounts


@dataclass(frozen=True)
class NodeVolumesArgs:
    spec: ClusterSpec
    nodes: list[NodePlan]
    access: dict[str, NodeAccess]


class NodeVolumes(pulumi.ComponentResource):
    access: dict[str, NodeAccess]  # the same access, each waiting for its node's volumes too

    def __init__(self, name: str, args: NodeVolumesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("NodeVolumes"), name, None, with_aliases("NodeVolumes", opts))
        script = data_volume_script()
        self.access = dict(args.access)
        for node in args.nodes:
            access = args.access[node.name]
            mounted = tuple(
                run_script(f"{name}-{node.name}-{volume.suffix}", script, [], access, self, args=volume.args)
                for volume in volume_mounts(args.spec, node)
            )
            if mounted:
                self.access[node.name] = replace(access, after=(*access.after, *mounted))
        self.register_outputs({})
