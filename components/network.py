"""ClusterNetwork: the management and interconnect libvirt networks on one host."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_libvirt as libvirt

from components.identity import token, with_aliases
from components.provider_facts import fixed_name_options
from config.models import Networks
from render.network_xslt import render_network_xslt


@dataclass(frozen=True)
class ClusterNetworkArgs:
    networks: Networks
    dns_hosts: tuple[tuple[str, str], ...]  # (hostname, management address) of every node


class ClusterNetwork(pulumi.ComponentResource):
    management_id: pulumi.Output[str]
    interconnect_id: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("ClusterNetwork"), name, None, with_aliases("ClusterNetwork", opts))
        child = fixed_name_options("libvirt:index/network:Network", self)
        mgmt, ic = args.networks.management, args.networks.interconnect

        if mgmt.mode == "bridge":
            # The host bridge and its L2 segment belong to the site; libvirt only attaches to it.
            management = libvirt.Network(
                f"{name}-mgmt", name=mgmt.name, mode="bridge", bridge=mgmt.bridge, autostart=True, opts=child
            )
        else:
            rng = mgmt.dhcp_range
            management = libvirt.Network(
                f"{name}-mgmt",
                name=mgmt.name,
                mode=mgmt.mode,
                domain=mgmt.domain,
                addresses=[mgmt.cidr],
                mtu=mgmt.mtu,
                autostart=True,
                dhcp=libvirt.NetworkDhcpArgs(enabled=True),
                dns=libvirt.NetworkDnsArgs(
                    enabled=True,
                    local_only=True,  # answer for the cluster domain, forward the rest
                    hosts=[libvirt.NetworkDnsHostArgs(hostname=h, ip=ip) for h, ip in sorted(args.dns_hosts)],
                ),
                xml=libvirt.NetworkXmlArgs(xslt=render_network_xslt(rng.start, rng.end)),
                opts=child,
            )

        if ic.mode == "bridge":
            interconnect = libvirt.Network(
                f"{name}-ic", name=ic.name, mode="bridge", bridge=ic.bridge, autostart=True, opts=child
            )
        else:
            # No host address and no DHCP: an isolated L2 segment that only the VMs share.
            interconnect = libvirt.Network(
                f"{name}-ic",
                name=ic.name,
                mode="none",
                mtu=ic.mtu,
                autostart=True,
                dhcp=libvirt.NetworkDhcpArgs(enabled=False),
                opts=child,
            )

        self.management_id = management.id
        self.interconnect_id = interconnect.id
        self.register_outputs({"management_id": self.management_id, "interconnect_id": self.interconnect_id})
