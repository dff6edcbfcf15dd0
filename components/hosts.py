"""ClusterHosts: /etc/hosts with every node, pushed to every node and kept current as nodes come and go."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command.remote as remote

from components.remote import node_connection, push_file
from config.models import ClusterSpec
from config.topology import NodePlan
from render.access import ssh_route
from render.cloudinit import render_hosts_file
from render.common import RenderedFile


@dataclass(frozen=True)
class ClusterHostsArgs:
    spec: ClusterSpec
    nodes: list[NodePlan]
    vms: dict[str, pulumi.Resource]  # node name -> its VM component
    ssh_private_key: pulumi.Input[str] | None = None


class ClusterHosts(pulumi.ComponentResource):
    files: dict[str, remote.Command]  # node name -> the command that writes its /etc/hosts

    def __init__(self, name: str, args: ClusterHostsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hyperscaler:hpc:ClusterHosts", name, None, opts)
        hosts = RenderedFile("/etc/hosts", render_hosts_file(args.spec, args.nodes))
        self.files = {}
        for node in args.nodes:
            connection = node_connection(
                ssh_route(args.spec, node), args.ssh_private_key, args.spec.ssh.connect_timeout_s
            )
            self.files[node.name] = push_file(
                f"{name}-{node.name}", hosts, connection, args.spec.ssh.user, self, depends_on=[args.vms[node.name]]
            )
        self.register_outputs({})
