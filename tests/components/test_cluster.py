"""Tier three: the component graph under Pulumi's mocks (wiring, parents, providers, names, secrets)."""

from __future__ import annotations

from collections import Counter

import pulumi
import pytest

from components.cluster import HpcCluster, HpcClusterArgs
from config.models import ClusterSpec
from config.topology import Role, plan_nodes
from hyperscaler.mocks import RecordingMonitor, Registration, contains_secret
from tests.stacks import STACKS, loaded

PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-test-only\n-----END OPENSSH PRIVATE KEY-----"
)


def build(monitor: RecordingMonitor, spec: ClusterSpec, private_key: str | None = PRIVATE_KEY) -> list[Registration]:
    @pulumi.runtime.test
    def program() -> pulumi.Output:
        key = pulumi.Output.secret(private_key) if private_key else None
        cluster = HpcCluster(spec.name, HpcClusterArgs(spec, key))
        return pulumi.Output.all(*(node.domain_id for node in cluster.nodes.values()))

    program()
    return monitor.records


def types(records: list[Registration]) -> Counter[str]:
    return Counter(r.type for r in records)


@pytest.mark.parametrize("stack", STACKS)
def test_resource_counts(monitor: RecordingMonitor, stack: str) -> None:
    spec = loaded(stack).spec
    records = build(monitor, spec)
    nodes = plan_nodes(spec)
    data = sum(len(n.data_disks_gib) for n in nodes) + 1  # + controller state volume
    counts = types(records)
    assert counts["libvirt:index/domain:Domain"] == len(nodes)
    assert counts["libvirt:index/cloudInitDisk:CloudInitDisk"] == len(nodes)
    assert counts["libvirt:index/volume:Volume"] == len(nodes) + data + len(spec.hosts) * len(spec.images)
    assert counts["libvirt:index/network:Network"] == 2 * len(spec.hosts)
    assert counts["libvirt:index/pool:Pool"] == len(spec.hosts)
    assert counts["pulumi:providers:libvirt"] == len(spec.hosts)
    assert counts["hyperscaler:hpc:HpcCluster"] == 1


def test_dev_plan_has_the_promised_shape(monitor: RecordingMonitor) -> None:
    records = build(monitor, loaded("dev").spec)
    counts = types(records)
    assert counts["hyperscaler:hpc:Controller"] == 1
    assert counts["hyperscaler:hpc:ComputeNode"] == 2
    assert counts["hyperscaler:hpc:StorageNode"] == 1


def test_no_resource_outside_a_component(monitor: RecordingMonitor) -> None:
    records = build(monitor, loaded("cluster").spec)
    by_urn = {r.urn: r for r in records}
    for rec in records:
        if rec.type == "hyperscaler:hpc:HpcCluster":
            continue
        parent = by_urn.get(rec.parent)
        assert parent is not None and not parent.custom, f"{rec.name} is not inside a component"
        assert rec.name.startswith(parent.name + "-"), f"{rec.name} is not named after its parent {parent.name}"


def test_each_node_uses_its_own_hosts_provider(monitor: RecordingMonitor) -> None:
    spec = loaded("cluster").spec
    records = build(monitor, spec)
    for node in plan_nodes(spec):
        for suffix in ("domain", "disk", "cloudinit"):
            rec = next(r for r in records if r.name == f"{spec.name}-{node.name}-{suffix}")
            assert f"::{spec.name}-{node.host}::" in rec.provider, (rec.name, rec.provider)
    for host in spec.hosts:
        provider = next(r for r in records if r.name == f"{spec.name}-{host.name}")
        assert provider.type == "pulumi:providers:libvirt" and provider.plain_inputs["uri"] == host.uri


def test_domain_wiring(monitor: RecordingMonitor) -> None:
    spec = loaded("dev").spec
    records = build(monitor, spec)
    by_name = {r.name: r for r in records}
    node = plan_nodes(spec)[0]
    domain = by_name[f"dev-{node.name}-domain"].plain_inputs
    root = by_name[f"dev-{node.name}-disk"]
    assert domain["name"] == f"dev-{node.name}" and domain["machine"] == "q35"
    assert domain["cpu"] == {"mode": "host-passthrough"}
    assert domain["firmware"] == "/usr/share/OVMF/OVMF_CODE_4M.fd"
    assert domain["vcpu"] == node.vcpus and domain["memory"] == node.memory_mib
    # ids come from the mocks exactly as the provider forms them: volume key = pool path + name
    assert domain["disks"][0]["volumeId"] == "/var/lib/libvirt/images/hyperscaler/dev-controller-root.qcow2"
    assert domain["cloudinit"].startswith("/var/lib/libvirt/images/hyperscaler/dev-controller-cloudinit.iso;")
    assert [i["mac"] for i in domain["networkInterfaces"]] == [node.mgmt_mac, node.ic_mac]
    assert domain["networkInterfaces"][0]["addresses"] == [node.mgmt_ip]
    assert '<topology sockets="1" dies="1" cores="2" threads="1"/>' in domain["xml"]["xslt"]
    assert root.urn in by_name[f"dev-{node.name}-domain"].depends_on
    assert root.plain_inputs["baseVolumeId"].endswith("/debian-12-base.qcow2")
    assert root.plain_inputs["size"] == node.disk_gib * 1024**3


def test_data_volumes_are_protected_and_root_volumes_are_not(monitor: RecordingMonitor) -> None:
    records = build(monitor, loaded("dev").spec)
    volumes = {r.name: r for r in records if r.type == "libvirt:index/volume:Volume"}
    protected = {n for n, r in volumes.items() if r.protect}
    assert protected == {"dev-controller-state", "dev-storage-01-data-1"}
    assert all(volumes[n].retain_on_delete for n in protected)
    assert not volumes["dev-cpu-01-disk"].protect


def test_dns_has_every_node(monitor: RecordingMonitor) -> None:
    spec = loaded("dev").spec
    records = build(monitor, spec)
    mgmt = next(r for r in records if r.name == "dev-ws1-net-mgmt").plain_inputs
    hosts = {(h["hostname"], h["ip"]) for h in mgmt["dns"]["hosts"]}
    assert hosts == {(n.name, n.mgmt_ip) for n in plan_nodes(spec)}
    ic = next(r for r in records if r.name == "dev-ws1-net-ic").plain_inputs
    assert ic["mode"] == "none" and ic["mtu"] == 9000 and not ic["dhcp"]["enabled"]


def test_bridged_cluster_networks_attach_to_host_bridges(monitor: RecordingMonitor) -> None:
    records = build(monitor, loaded("cluster").spec)
    nets = [r.plain_inputs for r in records if r.type == "libvirt:index/network:Network"]
    assert {(n["mode"], n["bridge"]) for n in nets} == {("bridge", "br-mgmt"), ("bridge", "br-hpc")}
    domains = [r.plain_inputs for r in records if r.type == "libvirt:index/domain:Domain"]
    assert all("addresses" not in d["networkInterfaces"][0] for d in domains)


def test_private_key_never_appears_in_plain_inputs(monitor: RecordingMonitor) -> None:
    records = build(monitor, loaded("dev").spec)
    for rec in records:
        masked = repr(rec.masked_inputs)
        assert "PRIVATE KEY" not in masked, rec.name
        if "PRIVATE KEY" in repr(rec.plain_inputs):
            assert contains_secret(rec.inputs), f"{rec.name} carries the private key without the secret flag"


def test_gpu_nodes_get_hostdevs_in_their_xslt(monitor: RecordingMonitor) -> None:
    spec = loaded("workstation").spec
    records = build(monitor, spec)
    for node in plan_nodes(spec):
        xslt = next(r for r in records if r.name == f"{spec.name}-{node.name}-domain").plain_inputs["xml"]["xslt"]
        if node.role is Role.COMPUTE:
            bus = node.gpus[0].address.split(":")[1]
            assert f'bus="0x{bus}"' in xslt
        else:
            assert "hostdev" not in xslt.replace("not(self::hostdev)", "")


def test_direct_kernel_boot_replaces_uefi(monitor: RecordingMonitor) -> None:
    from config.presets import apply_preset

    raw = apply_preset(
        {"preset": "dev", "name": "dev", "ssh": {"public_keys": [loaded("dev").spec.ssh.public_keys[0]]}}
    )
    raw["hosts"][0]["domain_type"] = "qemu"
    raw["hosts"][0]["direct_boot"] = {
        "kernel": "/srv/vmlinuz",
        "initrd": "/srv/initrd.img",
        "cmdline": "root=/dev/vda rw console=ttyS0 quiet",
    }
    records = build(monitor, ClusterSpec.model_validate(raw))
    domain = next(r for r in records if r.name == "dev-controller-domain").plain_inputs
    assert domain["type"] == "qemu" and domain["kernel"] == "/srv/vmlinuz" and domain["initrd"] == "/srv/initrd.img"
    assert domain["cmdlines"] == [{"root": "/dev/vda"}, {"_": "rw"}, {"console": "ttyS0"}, {"_": "quiet"}]
    assert "firmware" not in domain and "nvram" not in domain
