"""NodePackages: each node's role packages installed first, when its image lacks them (config/packages.py).

Everything else configured on a node waits for this step: files belong to users and directories that the
packages create (munge, slurm), and daemons come from them."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pulumi
import pulumi_command.remote as remote

from components.identity import token, with_aliases
from components.remote import NodeAccess, run_script
from config.models import ClusterSpec
from config.packages import packages_for
from config.storage_layout import mgmtd_node
from config.topology import NodePlan
from render.packages import render_packages_script


@dataclass(frozen=True)
class NodePackagesArgs:
    spec: ClusterSpec
    nodes: list[NodePlan]
    access: dict[str, NodeAccess]


class NodePackages(pulumi.ComponentResource):
    access: dict[str, NodeAccess]  # the same access, each waiting for its node's packages

    def __init__(self, name: str, args: NodePackagesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("NodePackages"), name, None, with_aliases("NodePackages", opts))
        self.access = {}
        mgmtd = mgmtd_node(args.spec, args.nodes)
        for node in args.nodes:
            access = args.access[node.name]
            script = render_packages_script(packages_for(args.spec, node, mgmtd))
            step: remote.Command = run_script(f"{name}-{node.name}", script, [], access, self)
            self.access[node.name] = replace(access, after=(*access.after, step))
        self.register_outputs({})
