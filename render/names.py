"""The names every node answers to, as DNS serves them: the one list that libvirt's DNS (nat and route
networks) and the controller's resolver (bridge networks) both publish. Nodes' /etc/hosts carry only
themselves, so adding a node changes no other node's files."""

from __future__ import annotations

from config.models import ClusterSpec
from config.topology import NodePlan
from render.common import HEADER_NOTE


def cluster_names(nodes: list[NodePlan]) -> list[tuple[str, str]]:
    """(name, address) of every node on both networks, sorted."""
    return sorted([(n.name, n.mgmt_ip) for n in nodes] + [(n.ic_name, n.ic_ip) for n in nodes])


def render_hosts_file(spec: ClusterSpec, nodes: list[NodePlan]) -> str:
    """The controller resolver's hosts file (dnsmasq addn-hosts): `address fqdn name` per line."""
    domain = spec.networks.management.domain
    lines = [HEADER_NOTE + ": every node of the cluster, served by dnsmasq on the controller."]
    lines += [f"{ip}\t{name}.{domain}\t{name}" for name, ip in cluster_names(nodes)]
    return "\n".join(lines) + "\n"


def uses_controller_dns(spec: ClusterSpec) -> bool:
    """Bridged management networks have no libvirt DNS: the controller serves the cluster's names."""
    return spec.networks.management.mode == "bridge"


def render_dnsmasq_conf(spec: ClusterSpec, controller: NodePlan) -> str:
    mgmt = spec.networks.management
    lines = [
        HEADER_NOTE + ": the cluster's names for its nodes; everything else goes to the site's resolvers.",
        f"listen-address=127.0.0.1,{controller.mgmt_ip}",
        "bind-interfaces",
        f"domain={mgmt.domain}",
        f"local=/{mgmt.domain}/",
        "expand-hosts",
        "no-hosts",
        f"addn-hosts={DNS_HOSTS}",
        "no-resolv",
        *(f"server={server}" for server in upstream_resolvers(spec, controller)),
    ]
    return "\n".join(lines) + "\n"


def controller_address(spec: ClusterSpec) -> str:
    return spec.networks.management.host_address(spec.controller.address_offset)


def upstream_resolvers(spec: ClusterSpec, controller: NodePlan) -> list[str]:
    """The site's resolvers, never the controller itself (dnsmasq would ask itself)."""
    return [r for r in spec.networks.management.resolvers if r != controller.mgmt_ip]


def node_resolvers(spec: ClusterSpec, node: NodePlan) -> list[str]:
    """What a node's resolv.conf lists, first to last: the controller's dnsmasq first on bridged networks
    (a closed port 53 fails over at once, so the site's resolvers still answer while it is not up)."""
    resolvers = list(spec.networks.management.resolvers)
    if not uses_controller_dns(spec):
        return resolvers
    ctl = controller_address(spec)
    first = "127.0.0.1" if node.mgmt_ip == ctl else ctl
    return [first, *(r for r in resolvers if r != ctl)]


DNS_HOSTS = "/etc/hyperscaler/hosts"
DNSMASQ_CONF = "/etc/dnsmasq.d/hyperscaler.conf"
