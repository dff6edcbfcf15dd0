"""Replay the remote.Commands a plan recorded, over SSH, the way pulumi-command runs them.

pulumi-command opens an SSH session to `connection.host` as `connection.user`, feeds `stdin`, and runs
`create` (on delete, `delete`) through the remote user's shell. Here the commands come from the program
itself under mocks, in an order that honours every depends_on, so the proof runs exactly what `pulumi up`
would send, in an order the engine could choose.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from hyperscaler.mocks import Registration
from render.common import in_dependency_order
from tests.integration.harness.nodes import Cluster

COMMAND = "command:remote:Command"


@dataclass(frozen=True)
class Ran:
    name: str
    host: str
    stdout: str


def command_order(records: list[Registration]) -> list[Registration]:
    """remote.Commands in an order that honours every depends_on between them."""
    commands = [r for r in records if r.type == COMMAND]
    return in_dependency_order(commands, lambda r: r.urn, lambda r: r.depends_on)


# (host, command, stdin, host key): like pulumi-command, a runner must refuse a server presenting another key.
SshRunner = Callable[[str, str, str | None, str], subprocess.CompletedProcess[str]]


def pinned_host_key(rec: Registration) -> str:
    """The host key a Command's connection pins; a connection without one is a defect (issue 8)."""
    key = rec.plain_inputs["connection"].get("hostKey")
    if not key:
        raise AssertionError(f"{rec.name}: the connection to {rec.plain_inputs['connection']['host']} pins no host key")
    return str(key)


def host_keys(records: list[Registration]) -> dict[str, tuple[str, str]]:
    """{hostname: (private key, public key)} from the plan's cloud-init user-data, which is how a VM gets them."""
    keys = {}
    for rec in records:
        if rec.type == "libvirt:index/cloudInitDisk:CloudInitDisk":
            doc = yaml.safe_load(rec.plain_inputs["userData"])
            keys[doc["hostname"]] = (doc["ssh_keys"]["ed25519_private"], doc["ssh_keys"]["ed25519_public"])
    return keys


def give_nodes_their_host_keys(cluster: Cluster, records: list[Registration]) -> None:
    """Install on each harness node the host key the plan's cloud-init would give its VM."""
    keys = host_keys(records)
    for node in cluster.nodes:
        if node.name in keys:
            node.install_host_key(*keys[node.name])


def replay(
    records: list[Registration],
    ssh: SshRunner,
    field: str = "create",
    only: set[str] | None = None,
    ordered: bool = True,
) -> list[Ran]:
    """Run each Command's `field` over SSH; in dependency order unless `ordered` is False (already ordered)."""
    ran = []
    for rec in command_order(records) if ordered else [r for r in records if r.type == COMMAND]:
        if only is not None and rec.name not in only:
            continue
        inputs = rec.plain_inputs
        command = inputs.get(field)
        if not command:
            continue
        host = inputs["connection"]["host"]
        proc = ssh(host, str(command), inputs.get("stdin"), pinned_host_key(rec))
        if proc.returncode != 0:
            raise AssertionError(f"{rec.name} on {host} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        ran.append(Ran(rec.name, host, proc.stdout))
    return ran


# What "a second run changes nothing" is checked against on a node: daemon pids and every managed file.
DAEMON_PIDS = (
    "for p in munged slurmctld slurmd slurmdbd mariadbd; do echo $p $(pgrep -x $p | sort | tr '\\n' ' '); done"
)
MANAGED_FILES = (
    "find /etc/slurm /etc/munge /usr/local/libexec/hyperscaler /etc/hosts /etc/fstab "
    "/var/lib/hyperscaler/applied -type f -exec sha256sum {} + 2>/dev/null | sort"
)


def snapshot(nodes: list[str], run_on: Callable[[str, str], str]) -> dict[str, str]:
    """{"node:pids"|"node:files": output} for every node; run_on(node, command) returns stdout."""
    state = {}
    for node in nodes:
        state[f"{node}:pids"] = run_on(node, DAEMON_PIDS)
        state[f"{node}:files"] = run_on(node, MANAGED_FILES)
    return state


@dataclass(frozen=True)
class Change:
    """What `pulumi up` from one plan to the next ran on the nodes."""

    ran: list[Ran]
    deleted: list[Ran]


def replay_change(before: list[Registration], after: list[Registration], ssh: SshRunner) -> Change:
    """Replay an update as the engine runs it against pulumi-command (provider docs, Command resource):
    a new Command runs `create`; a Command whose inputs changed is replaced (a trigger changed) or updated,
    and either way runs `create` again (no `update` command is set); unchanged Commands do nothing; then
    removed Commands run `delete`, dependents before what they depend on."""
    old = {r.urn: r.plain_inputs for r in before if r.type == COMMAND}
    changed = {r.name for r in after if r.type == COMMAND and old.get(r.urn) != r.plain_inputs}
    ran = replay(after, ssh, only=changed)
    new_urns = {r.urn for r in after}
    gone = [r for r in before if r.type == COMMAND and r.urn not in new_urns]
    deleted = replay(list(reversed(command_order(gone))), ssh, field="delete", ordered=False)
    return Change(ran, deleted)


def gpu_proof_cluster(cluster: Cluster, name: str, count: int, **sections: object) -> dict[str, object]:
    """The stack of the namespaced proofs: a controller at .11 and `count` GPU nodes from .12, each with 2
    (fake) H100s of a 64 GiB hypervisor; `sections` add or override top-level sections."""
    host_gpus = [
        {"address": f"0000:{bus:02x}:00.0", "model": "h100-80gb", "iommu_group": bus}
        for bus in (0x41, 0x42, 0x61, 0x62, 0x81, 0x82)
    ]
    return {
        "name": name,
        "hosts": [{"name": "hv", "cpu": {"cores_per_socket": 16}, "memory_mib": 65536, "gpus": host_gpus}],
        "networks": {"management": {"cidr": f"{cluster.subnet}.0/24"}},
        "ssh": {"user": "root", "public_keys": [cluster.public_key]},
        "controller": {"vcpus": 1, "memory_mib": 2048, "address_offset": 11},
        "compute": [
            {"name": "gpu", "count": count, "vcpus": 2, "memory_mib": 2048, "gpus_per_node": 2, "address_offset": 12}
        ],
        "storage": None,
        **sections,
    }
