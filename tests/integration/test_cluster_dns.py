"""Names on a bridged management network, where libvirt serves no DNS: the program's dnsmasq on the
controller (components/dns.py) answers for every node, and adding a node changes only the controller.

Namespaced nodes stand in for the VMs; each compute node's resolv.conf and /etc/hosts are what cloud-init
writes from the plan's network-config and user-data (render/cloudinit.py), so names resolve through
glibc exactly as on a VM.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hyperscaler.mocks import Registration
from hyperscaler.plan import PlanResult, run_plan
from tests.integration.harness.nodes import Cluster
from tests.integration.replay import give_nodes_their_host_keys, replay, replay_change

pytestmark = pytest.mark.integration

NAMES = ["controller", "cpu-01", "cpu-02", "cpu-03"]
DNS_PARTS = ("-packages-", "-dns-")


def bridged_stack(cluster: Cluster, tmp: Path, count: int) -> Path:
    stack = {
        "name": "dnst",
        "hosts": [{"name": "hv", "cpu": {"cores_per_socket": 16}, "memory_mib": 65536}],
        "networks": {
            "management": {
                "mode": "bridge",
                "bridge": "br-mgmt",
                "cidr": f"{cluster.subnet}.0/24",
                "domain": "hpc.example",
            },
            "interconnect": {"mode": "bridge", "bridge": "br-hpc"},
        },
        "ssh": {"user": "root", "public_keys": [cluster.public_key]},
        "controller": {"vcpus": 1, "memory_mib": 2048, "address_offset": 11},
        "compute": [{"name": "cpu", "count": count, "vcpus": 1, "memory_mib": 2048, "address_offset": 12}],
        "storage": None,
    }
    path = tmp / "Pulumi.dnst.yaml"
    path.write_text(yaml.safe_dump({"config": {"hyperscaler:cluster": stack}}))
    return path


def only_dns(records: list[Registration]) -> list[Registration]:
    """The packages and DNS Commands of a plan: what this test replays (SLURM is proven elsewhere)."""
    return [r for r in records if r.type != "command:remote:Command" or any(p in r.name for p in DNS_PARTS)]


@dataclass
class Dns:
    cluster: Cluster
    tmp: Path
    plan: PlanResult

    def ssh(self, host: str, command: str, stdin: str | None, host_key: str) -> subprocess.CompletedProcess[str]:
        return self.cluster.ssh_pinned(host, command, host_key, stdin)

    def resolve(self, node: str, name: str) -> str:
        return self.cluster[node].ssh(f"getent hosts {name} || true").stdout.strip()


def as_cloud_init_leaves_it(cluster: Cluster, plan: PlanResult, node: str) -> None:
    """resolv.conf from the plan's network-config, /etc/hosts from its user-data: nothing else."""
    files = plan.files[node]
    network = yaml.safe_load(files["/var/lib/cloud/seed/nocloud/network-config"])
    servers = network["ethernets"]["mgmt0"]["nameservers"]
    resolv = "".join(f"nameserver {s}\n" for s in servers["addresses"]) + f"search {' '.join(servers['search'])}\n"
    cluster[node].put_file("/etc/resolv.conf", resolv)
    cluster[node].put_file("/etc/hosts", files["/etc/hosts"])


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dns]:
    tmp = tmp_path_factory.mktemp("dns")
    with Cluster(4, names=NAMES) as cluster:
        first = tmp / "v0"
        first.mkdir()
        keys = run_plan(bridged_stack(cluster, first, count=3))
        give_nodes_their_host_keys(cluster, keys.records)
        plan = run_plan(bridged_stack(cluster, first, count=2))
        for node in NAMES[1:]:
            as_cloud_init_leaves_it(cluster, keys, node)
        d = Dns(cluster, tmp, plan)
        replay(only_dns(plan.records), d.ssh)
        yield d


def test_every_node_resolves_every_name_through_the_controller(dns: Dns) -> None:
    controller = dns.cluster["controller"].address
    for node in ("cpu-01", "cpu-02"):
        assert dns.resolve(node, "cpu-02.hpc.example").split()[0] == dns.cluster["cpu-02"].address
        assert dns.resolve(node, "controller").split()[0] == controller  # short name, through the search list
        assert dns.resolve(node, "cpu-01-ib").split()[0] == "10.78.0.12"  # interconnect alias, offset 12
    assert dns.resolve("cpu-01", "cpu-03") == ""


def test_adding_a_node_changes_only_the_controller(dns: Dns) -> None:
    step = dns.tmp / f"v{time.monotonic_ns()}"
    step.mkdir()
    after = run_plan(bridged_stack(dns.cluster, step, count=3))
    change = replay_change(only_dns(dns.plan.records), only_dns(after.records), dns.ssh)
    hosts = {dns.cluster.node_at(r.host).name for r in change.ran}
    assert hosts == {"controller", "cpu-03"}, hosts
    assert dns.resolve("cpu-01", "cpu-03").split()[0] == dns.cluster["cpu-03"].address
    assert any(r.name.endswith("-dns-dnsmasq") for r in change.ran)
    dns.plan = after
