"""ClusterHosts: /etc/hosts with every node, pushed to every node and kept current as nodes come and go."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command.remote as remote

from components.identity import token, with_aliases
from components.remote import NodeAccess, push_file
from config.models import ClusterSpec
from config.topology import NodePlan
from render.cloudinit import render_hosts_file
from render.common import RenderedFile


@dataclass(frozen=True)
class ClusterHostsArgs:
    spec: ClusterSpec
    nodes: list[NodePlan]
    access: dict[str, NodeAccess]  # node name -> how Commands reach it


class ClusterHosts(pulumi.ComponentResource):
    files: dict[str, remote.Command]  # node name -> the command that writes its /etc/hosts

    def __init__(self, name: str, args: ClusterHostsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("ClusterHosts"), name, None, with_aliases("ClusterHosts", opts))
        hosts = RenderedFile("/etc/hosts", render_hosts_file(args.spec, args.nodes))
        self.files = {}
        for node in args.nodes:
            self.files[node.name] = push_file(f"{name}-{node.name}", hosts, args.access[node.name], self)
        self.register_outputs({})
