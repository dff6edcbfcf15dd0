"""How an admin (or a configuration step) reaches a node over SSH."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from config.models import ClusterSpec, Host
from config.topology import NodePlan


@dataclass(frozen=True)
class SshRoute:
    host: str
    user: str
    jump: str | None = None  # user@host of the hypervisor, when the node sits behind its NAT

    @property
    def command(self) -> str:
        jump = f" -J {self.jump}" if self.jump else ""
        return f"ssh{jump} {self.user}@{self.host}"


def hypervisor_login(host: Host) -> str | None:
    """user@host from a remote libvirt URI (qemu+ssh://root@hv2/system); None for a local URI."""
    parts = urlsplit(host.uri)
    if not parts.scheme.endswith("+ssh") or not parts.hostname:
        return None
    user = parts.username or "root"
    port = f":{parts.port}" if parts.port else ""
    return f"{user}@{parts.hostname}{port}"


def ssh_route(spec: ClusterSpec, node: NodePlan) -> SshRoute:
    host = spec.host(node.host)
    behind_nat = spec.networks.management.mode != "bridge"
    jump = hypervisor_login(host) if host is not None and behind_nat else None
    return SshRoute(host=node.mgmt_ip, user=spec.ssh.user, jump=jump)
