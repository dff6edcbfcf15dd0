"""cloud-init NoCloud documents for a node: user-data, meta-data and network-config (v2)."""

from __future__ import annotations

from config.models import ClusterSpec
from config.topology import NodePlan
from render.common import dump_yaml
from render.hostkeys import HostKey
from render.names import node_resolvers

MGMT_IFACE = "mgmt0"
IC_IFACE = "hpc0"

SSHD_HARDENING = """\
# Managed by hyperscaler: keys only, no passwords.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
"""


_LOCALHOST = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", ""]


def _first_boot_hosts(spec: ClusterSpec, node: NodePlan) -> str:
    """Only the node itself: the other nodes' names come from DNS (render/names.py), so adding a node
    changes no other node's cloud-init disk or files."""
    domain = spec.networks.management.domain
    own = [
        f"{node.mgmt_ip}\t{node.name}.{domain}\t{node.name}",
        f"{node.ic_ip}\t{node.ic_name}.{domain}\t{node.ic_name}",
    ]
    return "\n".join([*_LOCALHOST, *own]) + "\n"


def render_user_data(spec: ClusterSpec, node: NodePlan, host_key: HostKey) -> str:
    """Call inside Output.apply: the host key is a secret, and so is the result."""
    ssh = spec.ssh
    if ssh.user == "root":
        users: list[object] = [{"name": "root", "lock_passwd": True, "ssh_authorized_keys": list(ssh.public_keys)}]
    else:
        users = [
            {
                "name": ssh.user,
                "groups": ["adm", "sudo"],
                "lock_passwd": True,
                "shell": "/bin/bash",
                "ssh_authorized_keys": list(ssh.public_keys),
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
            }
        ]
    doc = {
        "hostname": node.name,
        "fqdn": f"{node.name}.{spec.networks.management.domain}",
        "prefer_fqdn_over_hostname": False,
        "manage_etc_hosts": False,
        "ssh_pwauth": False,
        "disable_root": ssh.user != "root",
        # The node's one host key, which every connection pins: the image's keys are deleted and no
        # other type is generated, so an SSH client cannot be offered a key it was not told about.
        "ssh_deletekeys": True,
        "ssh_genkeytypes": ["ed25519"],  # cloud-init 22.4 refuses []; with ssh_keys given it generates none
        "ssh_keys": {"ed25519_private": host_key.private_openssh, "ed25519_public": host_key.public_openssh},
        "users": users,
        "timezone": "UTC",
        "ntp": {"enabled": True},  # munge rejects credentials from nodes whose clocks drift
        "write_files": [
            {
                "path": "/etc/hosts",
                "permissions": "0644",
                "owner": "root:root",
                "content": _first_boot_hosts(spec, node),
            },
            {
                "path": "/etc/ssh/sshd_config.d/50-hyperscaler.conf",
                "permissions": "0644",
                "owner": "root:root",
                "content": SSHD_HARDENING,
            },
            {
                "path": "/etc/hyperscaler/node.env",
                "permissions": "0644",
                "owner": "root:root",
                "content": f"CLUSTER={spec.name}\nNODE={node.name}\nROLE={node.role.value}\nGROUP={node.group}\n",
            },
        ],
        "runcmd": [["systemctl", "try-reload-or-restart", "ssh"]],
    }
    return "#cloud-config\n" + dump_yaml(doc)


def render_meta_data(spec: ClusterSpec, node: NodePlan) -> str:
    # A stable instance-id: cloud-init runs its once-per-instance modules only on the first boot.
    return dump_yaml({"instance-id": f"{spec.name}-{node.name}", "local-hostname": node.name})


def render_network_config(spec: ClusterSpec, node: NodePlan) -> str:
    mgmt, ic = spec.networks.management, spec.networks.interconnect
    doc = {
        "version": 2,
        "ethernets": {
            MGMT_IFACE: {
                "match": {"macaddress": node.mgmt_mac},
                "set-name": MGMT_IFACE,
                "addresses": [f"{node.mgmt_ip}/{mgmt.network.prefixlen}"],
                # "0.0.0.0/0", not "default": cloud-init 22.4 (Debian 12) rejects "default" and brings no interface up
                "routes": [{"to": "0.0.0.0/0", "via": mgmt.gateway_address}],
                "nameservers": {"addresses": node_resolvers(spec, node), "search": [mgmt.domain]},
                "mtu": mgmt.mtu,
            },
            IC_IFACE: {
                "match": {"macaddress": node.ic_mac},
                "set-name": IC_IFACE,
                "addresses": [f"{node.ic_ip}/{ic.network.prefixlen}"],
                "mtu": ic.mtu,
            },
        },
    }
    return dump_yaml(doc)
