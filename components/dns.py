"""ClusterDns: on bridged management networks, dnsmasq on the controller serves every node's name.

libvirt's own DNS serves the names on nat and route networks (components/network.py). A bridged network
belongs to the site and has none, so the controller answers for the cluster's domain from a hosts file
and forwards everything else to the site's resolvers. Adding a node changes that file on the controller
only; no other node is touched."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.identity import token, with_aliases
from components.remote import NodeAccess, push_file, run_script
from config.models import ClusterSpec
from config.topology import NodePlan
from render.common import RenderedFile, content_hash
from render.names import DNS_HOSTS, DNSMASQ_CONF, render_dnsmasq_conf, render_hosts_file
from render.remote import render_script


@dataclass(frozen=True)
class ClusterDnsArgs:
    spec: ClusterSpec
    nodes: list[NodePlan]
    controller: NodePlan
    access: NodeAccess  # the controller's


class ClusterDns(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterDnsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("ClusterDns"), name, None, with_aliases("ClusterDns", opts))
        hosts = RenderedFile(DNS_HOSTS, render_hosts_file(args.spec, args.nodes))
        conf = RenderedFile(DNSMASQ_CONF, render_dnsmasq_conf(args.spec, args.controller))
        script = render_script("dns", {"HOSTS_FILE": DNS_HOSTS, "CONF_FILE": DNSMASQ_CONF})
        pushed = [
            push_file(f"{name}-{slug}", file, args.access, self) for slug, file in (("hosts", hosts), ("conf", conf))
        ]
        run_script(
            f"{name}-dnsmasq",
            script,
            [content_hash(hosts.content), content_hash(conf.content)],
            args.access,
            self,
            pushed,
        )
        self.register_outputs({})
