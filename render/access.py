"""How an admin (or a configuration step) reaches a node over SSH."""

from __future__ import annotations

from dataclasses import dataclass

from config.models import ClusterSpec
from config.topology import NodePlan


@dataclass(frozen=True)
class SshRoute:
    host: str
    user: str
    jump: str | None = None  # user@host of the hypervisor, when the node sits behind its NAT
    jump_host_key: str | None = None  # the hypervisor's SSH host key (hosts[].ssh_host_key)

    @property
    def command(self) -> str:
        jump = f" -J {self.jump}" if self.jump else ""
        return f"ssh{jump} {self.user}@{self.host}"


def ssh_route(spec: ClusterSpec, node: NodePlan) -> SshRoute:
    host = spec.host(node.host)
    if host is None or not spec.needs_jump_host(host):
        return SshRoute(host=node.mgmt_ip, user=spec.ssh.user)
    return SshRoute(host=node.mgmt_ip, user=spec.ssh.user, jump=host.ssh_login, jump_host_key=host.ssh_host_key)
