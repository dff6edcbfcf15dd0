"""Tier three: the component graph under Pulumi's mocks (wiring, parents, providers, names, secrets)."""

from __future__ import annotations

from collections import Counter

import pulumi
import pytest
import yaml

from components.cluster import HpcCluster, HpcClusterArgs
from config.models import ClusterSpec
from config.topology import Role, plan_nodes
from hyperscaler.mocks import RecordingMonitor, Registration, contains_secret
from render.images import base_volume_name
from tests.stacks import STACKS, loaded

CLOUDINIT = "libvirt:index/cloudInitDisk:CloudInitDisk"
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
    data = sum(len(n.volumes) for n in nodes)  # state, data-N, meta
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
    assert root.plain_inputs["baseVolumeId"].endswith(f"/{base_volume_name(node.image, spec.images[node.image])}")
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
    nodes = plan_nodes(spec)
    assert hosts == {(n.name, n.mgmt_ip) for n in nodes} | {(n.ic_name, n.ic_ip) for n in nodes}
    assert not any(r.type == "hyperscaler:hpc:ClusterDns" for r in records)  # libvirt serves the names
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


def test_every_connection_pins_the_nodes_host_key(monitor: RecordingMonitor) -> None:
    spec = loaded("dev").spec
    records = build(monitor, spec)
    user_data = {
        yaml.safe_load(r.plain_inputs["userData"])["hostname"]: yaml.safe_load(r.plain_inputs["userData"])
        for r in records
        if r.type == "libvirt:index/cloudInitDisk:CloudInitDisk"
    }
    address = {n.mgmt_ip: n.name for n in plan_nodes(spec)}
    commands = [r for r in records if r.type == "command:remote:Command"]
    assert commands
    for rec in commands:
        connection = rec.plain_inputs["connection"]
        node = address[connection["host"]]
        keys = user_data[node]["ssh_keys"]
        assert connection["hostKey"] == " ".join(keys["ed25519_public"].split()[:2]), rec.name
        assert user_data[node]["ssh_genkeytypes"] == ["ed25519"] and user_data[node]["ssh_deletekeys"] is True


def fixed_host_keys_are_secret_and_distinct(monitor: RecordingMonitor) -> None:
    records = build(monitor, loaded("dev").spec)
    disks = [r for r in records if r.type == "libvirt:index/cloudInitDisk:CloudInitDisk"]
    privates = {yaml.safe_load(r.plain_inputs["userData"])["ssh_keys"]["ed25519_private"] for r in disks}
    assert len(privates) == len(disks)
    for rec in records:
        masked = repr(rec.masked_inputs)
        assert not any(p.splitlines()[1] in masked for p in privates), f"{rec.name} shows a host private key"
    assert all(contains_secret(r.inputs["userData"]) for r in disks)


def test_jump_host_connections_pin_the_hypervisor_key(monitor: RecordingMonitor) -> None:
    hv_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR"
    spec = loaded("dev").spec.model_copy(
        update={
            "hosts": [
                spec_host.model_copy(update={"uri": "qemu+ssh://root@ws1/system", "ssh_host_key": hv_key})
                for spec_host in loaded("dev").spec.hosts
            ]
        }
    )
    commands = [r for r in build(monitor, spec) if r.type == "command:remote:Command"]
    for rec in commands:
        proxy = rec.plain_inputs["connection"]["proxy"]
        assert proxy["host"] == "ws1" and proxy["hostKey"] == hv_key, rec.name


def test_name_bearing_libvirt_resources_are_deleted_before_replaced(monitor: RecordingMonitor) -> None:
    records = build(monitor, loaded("dev").spec)
    for rec in records:
        if rec.type in ("libvirt:index/domain:Domain", "libvirt:index/network:Network", CLOUDINIT):
            assert rec.delete_before_replace, rec.name
        if rec.type == "libvirt:index/volume:Volume":
            # data volumes are never replaced (protected); every other volume has a fixed name
            assert rec.protect or rec.delete_before_replace, rec.name
        if rec.type == "libvirt:index/pool:Pool":
            assert rec.protect and rec.retain_on_delete, rec.name


def test_components_declare_their_former_tokens(monitor: RecordingMonitor) -> None:
    from components import identity

    identity.TYPES["ComputeNode"] = identity.ComponentType("hyperscaler:hpc:ComputeNode", ("hyperscaler:old:Worker",))
    try:
        records = build(monitor, loaded("dev").spec)
    finally:
        identity.TYPES["ComputeNode"] = identity.ComponentType("hyperscaler:hpc:ComputeNode")
    workers = [r for r in records if r.type == "hyperscaler:hpc:ComputeNode"]
    assert workers and all(r.aliases == ["hyperscaler:old:Worker"] for r in workers)
