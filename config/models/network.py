"""The two cluster networks: management (SSH, DNS, NAT to the outside) and the HPC interconnect."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import model_validator

from config.impact import Impact, setting
from config.models.base import Model
from config.types import Cidr, DnsDomain, Hostname, IPv4, Mtu, NonEmptyStr


class DhcpRange(Model):
    start: IPv4 = setting(impact=Impact.REPLACE_VM, doc="First address libvirt's DHCP server hands out.")
    end: IPv4 = setting(impact=Impact.REPLACE_VM, doc="Last address libvirt's DHCP server hands out.")


class _Network(Model):
    name: Hostname
    cidr: Cidr
    mtu: Mtu
    bridge: NonEmptyStr | None = setting(
        None, impact=Impact.REPLACE_VM, doc="Host bridge to attach to (required when mode is bridge), e.g. br-mgmt."
    )

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    def host_address(self, offset: int) -> str:
        """The address `offset` hosts into the subnet (offset 1 is the first usable address)."""
        return str(self.network.network_address + offset)

    def offset_of(self, address: str) -> int:
        return int(ipaddress.IPv4Address(address)) - int(self.network.network_address)


class ManagementNetwork(_Network):
    name: Hostname = setting("hpc-mgmt", impact=Impact.REPLACE_VM, doc="libvirt network name on every host.")
    cidr: Cidr = setting("10.77.0.0/24", impact=Impact.REPLACE_VM, doc="Management subnet (SSH, DNS, SLURM control).")
    mode: Literal["nat", "route", "bridge"] = setting(
        "nat",
        impact=Impact.REPLACE_VM,
        doc="nat or route: libvirt owns the subnet on one host; bridge: join a host bridge (multi-host clusters).",
    )
    domain: DnsDomain = setting(
        "hpc", impact=Impact.REPLACE_VM, doc="DNS domain of the nodes (node.domain), e.g. hpc or hpc.example.com."
    )
    gateway: IPv4 | None = setting(
        None, impact=Impact.REPLACE_VM, doc="Gateway address; defaults to the first usable address of the subnet."
    )
    dhcp: DhcpRange | None = setting(
        None,
        impact=Impact.REPLACE_VM,
        doc="DHCP range for ad-hoc guests; defaults to the last quarter of the subnet. Nodes never use DHCP.",
    )
    mtu: Mtu = setting(1500, impact=Impact.REPLACE_VM, doc="MTU of the management network (576-9216).")
    dns_servers: list[IPv4] = setting(
        [], impact=Impact.REPLACE_VM, doc="Resolvers for the nodes; defaults to the gateway (libvirt's dnsmasq)."
    )

    @model_validator(mode="after")
    def _bridge_needs_name(self) -> ManagementNetwork:
        if self.mode == "bridge" and not self.bridge:
            raise ValueError("mode 'bridge' needs 'bridge': the name of an existing host bridge, e.g. br-mgmt")
        return self

    @property
    def gateway_address(self) -> str:
        return self.gateway or self.host_address(1)

    @property
    def dhcp_range(self) -> DhcpRange:
        if self.dhcp is not None:
            return self.dhcp
        size = self.network.num_addresses
        return DhcpRange(start=self.host_address(size - size // 4), end=self.host_address(size - 2))

    @property
    def resolvers(self) -> list[str]:
        return list(self.dns_servers) or [self.gateway_address]


class InterconnectNetwork(_Network):
    name: Hostname = setting("hpc-ic", impact=Impact.REPLACE_VM, doc="libvirt network name on every host.")
    cidr: Cidr = setting("10.78.0.0/24", impact=Impact.REPLACE_VM, doc="Interconnect subnet (MPI, BeeGFS traffic).")
    mode: Literal["isolated", "bridge"] = setting(
        "isolated", impact=Impact.REPLACE_VM, doc="isolated: host-local, no routing; bridge: join a host bridge."
    )
    mtu: Mtu = setting(9000, impact=Impact.REPLACE_VM, doc="MTU (576-9216); 9000 (jumbo frames) suits storage and MPI.")

    @model_validator(mode="after")
    def _bridge_needs_name(self) -> InterconnectNetwork:
        if self.mode == "bridge" and not self.bridge:
            raise ValueError("mode 'bridge' needs 'bridge': the name of an existing host bridge, e.g. br-hpc")
        return self


class Networks(Model):
    management: ManagementNetwork = setting(ManagementNetwork(), impact=Impact.REPLACE_VM, doc="Management network.")
    interconnect: InterconnectNetwork = setting(
        InterconnectNetwork(), impact=Impact.REPLACE_VM, doc="High-speed, isolated interconnect network."
    )
