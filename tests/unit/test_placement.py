"""The placement planner (config/placement.py) and the tuning it becomes (render/placement.py)."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from config.checks import run_checks
from config.findings import Severity
from config.models import ClusterSpec
from config.placement import Concern, Placement, place, sibling_cores
from config.topology import plan_nodes
from render.domain_xslt import DomainTuning, render_domain_xslt
from render.placement import (
    PlacementError,
    data_disk_serial,
    hard_limit_kib,
    pcihole64_kib,
    plan_placement,
)
from tests.stacks import STACKS, loaded

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR test"
GIB_KIB = 1024 * 1024


def host(name: str = "h1", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "cpu": {"sockets": 1, "cores_per_socket": 8, "threads_per_core": 1},
        "memory_mib": 65536,
        "reserve": {"cpus": "0", "memory_mib": 4096},
    }
    data.update(fields)
    return data


def gpu(address: str, numa: int = 0, group: int | None = 1, model: str = "h100-80gb", **fields: Any) -> dict[str, Any]:
    return {"address": address, "model": model, "iommu_group": group, "numa_node": numa, **fields}


def make_spec(hosts: list[dict[str, Any]], compute: list[dict[str, Any]], **extra: Any) -> ClusterSpec:
    data: dict[str, Any] = {
        "name": "t",
        "hosts": hosts,
        "ssh": {"public_keys": [KEY]},
        "controller": {"vcpus": 1, "memory_mib": 1024},
        "compute": compute,
        "storage": None,
    }
    data.update(extra)
    return ClusterSpec.model_validate(data)


def two_node_host(name: str = "h1", **fields: Any) -> dict[str, Any]:
    """8 single-thread cores, node 0 = CPUs 0-3, node 1 = CPUs 4-7, CPU 0 reserved."""
    return host(
        name,
        numa_nodes=[
            {"id": 0, "cpus": "0-3", "memory_mib": 32768},
            {"id": 1, "cpus": "4-7", "memory_mib": 32768},
        ],
        **fields,
    )


def findings(placement: Placement, concern: Concern) -> list[str]:
    return [f"{f.path}: {f.message}" for f in placement.findings[concern]]


# --- the committed stacks --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_vcpu_gets_its_own_cpu_outside_the_reserve(stack: str) -> None:
    spec = loaded(stack).spec
    placement = place(spec)
    assert not [f for f in placement.all_findings if f.is_error]
    for h in spec.hosts:
        vms = [v for v in placement.vms.values() if v.host == h.name]
        used = [c for v in vms for c in v.cpus]
        assert len(used) == len(set(used)), f"overlap on {h.name}"
        assert not set(used) & set(h.reserved_cpus)
        assert all(v.emulator_cpus == tuple(h.reserved_cpus) for v in vms)
    for node in plan_nodes(spec):
        assert len(placement.vms[node.name].cpus) == node.vcpus


def test_gpu_vms_sit_on_their_gpus_numa_node() -> None:
    for stack in ("workstation", "cluster"):
        spec = loaded(stack).spec
        placement = place(spec)
        for node in plan_nodes(spec):
            if not node.gpus:
                continue
            h = spec.host(node.host)
            assert h is not None
            gpu_node = node.gpus[0].numa_node
            node_cpus = set(next(n for n in h.numa_nodes if n.id == gpu_node).cpu_list)
            vm = placement.vms[node.name]
            assert set(vm.cpus) <= node_cpus, node.name
            assert vm.numa_nodes == (gpu_node,)


def test_smt_guest_threads_get_host_siblings() -> None:
    spec = loaded("workstation").spec  # 16 cores x 2 threads: CPU n and n+16 share a core
    vm = place(spec).vms["gpu-01"]
    pairs = list(zip(vm.cpus[0::2], vm.cpus[1::2], strict=True))
    assert all(b == a + 16 for a, b in pairs)
    assert vm.cpus[:2] == (1, 17)  # core 0 (CPUs 0 and 16) is the reserve


def test_single_thread_guests_fill_whole_cores_first() -> None:
    spec = loaded("dev").spec  # 8 cores x 2 threads, reserve 0-1 = one thread of cores 0 and 1
    placement = place(spec)
    assert placement.vms["cpu-01"].cpus == (2, 10)
    # a 1-vCPU VM takes the free half of a reserved core (services from the top) rather than breaking a core
    assert placement.vms["storage-01"].cpus == (9,)
    assert placement.vms["controller"].cpus == (7, 15)


def test_scaling_compute_does_not_move_service_vms() -> None:
    # A changed pinning changes the domain XSLT, which replaces the VM: the controller must not move.
    spec = loaded("workstation").spec
    grown = spec.model_copy(update={"compute": [spec.compute[0].model_copy(update={"count": 1})]})
    before, after = plan_placement(spec), plan_placement(grown)
    for name in ("controller", "storage-01", "gpu-01"):
        assert before[name] == after[name], name


def test_sibling_numbering_assumption() -> None:
    spec = loaded("cluster").spec
    cores = sibling_cores(spec.hosts[0])  # 2 sockets x 16 cores x 2 threads
    assert cores[5] == (5, 37) and cores[37] == (5, 37) and cores[31] == (31, 63)
    flat = make_spec([host()], [])
    assert sibling_cores(flat.hosts[0])[3] == (3,)


def test_hugepages_back_compute_vms_on_a_1g_host() -> None:
    placement = place(loaded("workstation").spec)
    assert placement.vms["gpu-01"].hugepage_kib == 1048576
    assert placement.vms["controller"].hugepage_kib is None  # service VMs use normal pages
    assert placement.memory_on("ws1") == (2 * 49152, 4096 + 4096)


def test_plan_is_deterministic() -> None:
    spec = loaded("cluster").spec
    assert place(spec) == place(spec)
    assert plan_placement(spec) == plan_placement(loaded("cluster").spec)


# --- refusals and warnings ---------------------------------------------------------------------------


def smt_short_spec() -> ClusterSpec:
    # 4 cores x 2 threads; the reserve takes one thread each of cores 0 and 1, so only cores 2 and 3 are whole.
    h2 = host("h2", cpu={"sockets": 1, "cores_per_socket": 4, "threads_per_core": 2}, reserve={"cpus": "0,5"})
    topo = {"sockets": 1, "cores": 3, "threads": 2}
    return make_spec(
        [host("h1"), h2], [{"name": "b", "count": 1, "host": "h2", "vcpus": 6, "memory_mib": 4096, "topology": topo}]
    )


def test_refusal_says_what_is_short() -> None:
    spec = smt_short_spec()
    placement = place(spec)
    assert findings(placement, Concern.CPUS) == [
        "compute[0].vcpus: b-01 needs 3 whole cores (6 vCPUs with threads: 2) on h2; 2 are free after the reserve (0,5)"
    ]
    with pytest.raises(PlacementError, match="b-01 needs 3 whole cores"):
        plan_placement(spec)


def test_refusal_names_the_vms_placed_before() -> None:
    h2 = host("h2", cpu={"sockets": 1, "cores_per_socket": 4, "threads_per_core": 2}, reserve={"cpus": "0,5"})
    spec = make_spec(
        [host("h1"), h2],
        [
            {"name": "b", "count": 1, "host": "h2", "vcpus": 4, "memory_mib": 1024,
             "topology": {"sockets": 1, "cores": 2, "threads": 2}},
            {"name": "c", "count": 1, "host": "h2", "vcpus": 2, "memory_mib": 1024,
             "topology": {"sockets": 1, "cores": 1, "threads": 2}},
        ],
    )  # fmt: skip
    assert findings(place(spec), Concern.CPUS) == [
        "compute[1].vcpus: c-01 needs 1 whole cores (2 vCPUs with threads: 2) on h2; 0 are free after "
        "b-01 and the reserve (0,5)"
    ]


def test_whole_core_vms_are_placed_before_single_thread_ones() -> None:
    # Two NUMA nodes of two 2-thread cores. Single-thread VMs placed first would take one thread on each
    # node (most free CPUs first) and leave no room for the 3-core VM; placed after it, they fit.
    h2 = host(
        "h2",
        cpu={"sockets": 1, "cores_per_socket": 4, "threads_per_core": 2},
        reserve={"cpus": ""},
        numa_nodes=[
            {"id": 0, "cpus": "0-1,4-5", "memory_mib": 32768},
            {"id": 1, "cpus": "2-3,6-7", "memory_mib": 32768},
        ],
    )
    spec = make_spec(
        [host("h1"), h2],
        [
            {"name": "a", "count": 2, "host": "h2", "vcpus": 1, "memory_mib": 1024},
            {"name": "b", "count": 1, "host": "h2", "vcpus": 6, "memory_mib": 1024,
             "topology": {"sockets": 1, "cores": 3, "threads": 2}},
        ],
    )  # fmt: skip
    placement = place(spec)
    assert not [f for f in placement.all_findings if f.is_error]
    b = placement.vms["b-01"].cpus
    assert sorted(b) == [0, 1, 2, 4, 5, 6] and all(y == x + 4 for x, y in zip(b[0::2], b[1::2], strict=True))
    assert sorted(placement.vms["a-01"].cpus + placement.vms["a-02"].cpus) == [3, 7]


def test_gpu_node_too_small_spills_with_a_warning() -> None:
    spec = make_spec(
        [host("h1"), two_node_host("h2", gpus=[gpu("0000:41:00.0", 0, 1), gpu("0000:42:00.0", 0, 2)])],
        [{"name": "gpu", "count": 2, "host": "h2", "vcpus": 2, "memory_mib": 4096, "gpus_per_node": 1}],
    )
    placement = place(spec)
    assert findings(placement, Concern.NUMA) == [
        "compute[0].vcpus: gpu-02 needs 2 CPUs next to its GPU on NUMA node 0 of h2; 1 are free there after "
        "gpu-01 and the reserve, so 1 vCPUs run on node 1 (slower host-to-GPU copies)"
    ]
    assert all(f.severity is Severity.WARNING for f in placement.findings[Concern.NUMA])
    vm = placement.vms["gpu-02"]
    assert vm.cpus == (3, 4) and vm.numa_nodes == (0, 1)
    assert placement.vms["gpu-01"].cpus == (1, 2)
    plan_placement(spec)  # a warning does not stop the plan


def test_memory_larger_than_the_node_widens_the_binding() -> None:
    spec = make_spec(
        [host("h1"), two_node_host("h2")],
        [{"name": "big", "count": 1, "host": "h2", "vcpus": 2, "memory_mib": 40960}],
    )
    placement = place(spec)
    assert placement.vms["big-01"].numa_nodes == (0, 1)
    assert any("also comes from node" in m for m in findings(placement, Concern.NUMA))


def test_hugepages_fall_back_with_a_warning() -> None:
    spec = make_spec(
        [host("h1"), host("h2", hugepages={"size_kib": 1048576, "count": 10})],
        [{"name": "c", "count": 2, "host": "h2", "vcpus": 2, "memory_mib": 8192}],
    )
    placement = place(spec)
    assert placement.vms["c-01"].hugepage_kib == 1048576
    assert placement.vms["c-02"].hugepage_kib is None
    (warning,) = placement.findings[Concern.HUGEPAGES]
    assert warning.path == "hosts[1].hugepages.count" and warning.severity is Severity.WARNING
    assert "c-02 needs 8 1 GiB hugepages on NUMA node 0 of h2; 2 are left" in warning.message
    assert "raise hugepages.count by 6" in warning.hint
    # 64 GiB - 10 GiB pool - 4 GiB reserve leaves room for c-02 in normal pages
    assert not placement.findings[Concern.MEMORY]


def test_normal_memory_short_because_of_the_pool_is_an_error() -> None:
    spec = make_spec(
        [host("h1"), host("h2", hugepages={"size_kib": 1048576, "count": 50})],
        [{"name": "c", "count": 2, "host": "h2", "vcpus": 2, "memory_mib": 28672}],
    )
    (error,) = place(spec).findings[Concern.MEMORY]
    assert error.is_error and error.path == "compute[0].memory_mib"
    assert error.message == (
        "c-02 needs 28672 MiB of normal (non-hugepage) memory on h2; 10240 MiB are left after c-01, the "
        "51200 MiB hugepage pool and the 4096 MiB reserve"
    )
    assert "raise hosts[1].hugepages.count" in error.hint


def test_memory_not_a_multiple_of_the_page_size_uses_normal_pages() -> None:
    spec = make_spec(
        [host("h1"), host("h2", hugepages={"size_kib": 1048576, "count": 20})],
        [{"name": "c", "count": 1, "host": "h2", "vcpus": 2, "memory_mib": 3000}],
    )
    placement = place(spec)
    assert placement.vms["c-01"].hugepage_kib is None
    assert findings(placement, Concern.HUGEPAGES) == [
        "compute[0].memory_mib: c-01's 3000 MiB is not a multiple of the 1 GiB hugepage size, so it uses normal pages"
    ]


def test_too_many_vcpus_is_reported_once_by_capacity() -> None:
    spec = make_spec([host("h1")], [{"name": "c", "count": 2, "vcpus": 4, "memory_mib": 1024}])
    found = [f for f in run_checks(spec) if "vCPU" in f.message or "CPUs" in f.message]
    assert [f.path for f in found] == ["hosts[0]"]
    assert "9 vCPUs are placed on h1" in found[0].message
    with pytest.raises(PlacementError, match="not placed"):
        plan_placement(spec)


# --- the tuning ---------------------------------------------------------------------------------------


def test_workstation_gpu_tuning() -> None:
    t = plan_placement(loaded("workstation").spec)["gpu-01"]
    assert t.hostdevs == ("0000:41:00.0",)
    assert len(t.vcpupins) == 12 and t.emulator_cpus == (0, 16) and t.numa_nodes == (0,)
    assert t.hugepage_kib == 1048576 and t.locked_memory
    assert t.hard_limit_kib == (49152 + 1024 + 256) * 1024
    assert t.pcihole64_kib == 256 * GIB_KIB and t.maxphysaddr_passthrough and not t.kvm_hidden
    ctl = plan_placement(loaded("workstation").spec)["controller"]
    assert not ctl.locked_memory and ctl.hard_limit_kib is None and ctl.pcihole64_kib is None
    assert ctl.disk_serials == (("workstation-controller-state.qcow2", "hs-state"),)


def test_pcihole64_sizes() -> None:
    spec = make_spec(
        [
            host(
                "h1",
                gpus=[
                    gpu(f"0000:{b}:00.0", group=i, model=m)
                    for i, (b, m) in enumerate(
                        [
                            ("41", "h100-80gb"),
                            ("42", "rtx-4090"),
                            ("43", "h100-80gb"),
                            ("44", "h100-80gb"),
                            ("45", "h100-80gb"),
                        ]
                    )
                ],
            )
        ],
        [],
    )
    gpus = spec.hosts[0].gpus
    assert pcihole64_kib(()) is None
    assert pcihole64_kib((gpus[1],)) == 64 * GIB_KIB  # 24 GiB: 48 -> the 64 GiB minimum
    assert pcihole64_kib((gpus[0],)) == 256 * GIB_KIB  # 80 GiB: 160 -> 256
    assert pcihole64_kib((gpus[0], gpus[2], gpus[3], gpus[4])) == 1024 * GIB_KIB  # 320 GiB: 640 -> 1 TiB


def test_hard_limit_covers_page_tables_without_hugepages() -> None:
    assert hard_limit_kib(65536, 2, hugepages=True) == (65536 + 1024 + 512) * 1024
    assert hard_limit_kib(65536, 2, hugepages=False) == (65536 + 1024 + 512 + 256) * 1024


def test_data_disk_serials() -> None:
    assert data_disk_serial("state") == "hs-state"
    assert data_disk_serial("data-12") == "hs-data-12"
    with pytest.raises(ValueError, match="20 characters"):
        data_disk_serial("a-very-long-suffix-x")


def test_kvm_hidden_only_when_asked() -> None:
    gpus = [gpu("0000:01:00.0", model="rtx-4090", kvm_hidden=True), gpu("0000:02:00.0", group=2, model="rtx-4090")]
    spec = make_spec(
        [host("h1", gpus=gpus, memory_mib=131072)],
        [{"name": "g", "count": 2, "vcpus": 2, "memory_mib": 4096, "gpus_per_node": 1}],
    )
    tunings = plan_placement(spec)
    assert tunings["g-01"].kvm_hidden and not tunings["g-02"].kvm_hidden
    assert '<hidden state="on"/>' in render_domain_xslt(tunings["g-01"])


# --- the stylesheet on provider-shaped XML --------------------------------------------------------------

BASE = b"""<domain type="kvm"><name>t-controller</name><memory unit="MiB">1024</memory><vcpu>1</vcpu>
<cpu mode="host-passthrough"></cpu><devices>
<disk type="volume" device="disk"><source pool="p" volume="t-controller-root.qcow2"/>
<target dev="vda" bus="virtio"/></disk>
<disk type="volume" device="disk"><source pool="p" volume="t-controller-state.qcow2"/>
<target dev="vdb" bus="virtio"/></disk>
<disk type="file" device="disk"><source file="/pool/t-controller-data-1.qcow2"/><target dev="vdc" bus="virtio"/></disk>
<disk type="file" device="disk"><source file="/pool/t-controller-data-11.qcow2"/><target dev="vdd" bus="virtio"/></disk>
<disk type="file" device="cdrom"><source file="/pool/t-controller-cloudinit.iso"/><target dev="hdd" bus="ide"/>
<serial>cloudinit</serial></disk>
<console><target type="serial" port="0"/></console></devices></domain>"""


def transform(tuning: DomainTuning, xml: bytes = BASE) -> etree._Element:
    sheet = etree.XSLT(etree.fromstring(render_domain_xslt(tuning).encode()))
    return sheet(etree.fromstring(xml)).getroot()


def test_serials_go_to_the_named_volumes_only() -> None:
    tuning = DomainTuning(
        1, 1, 1, disk_serials=(("t-controller-state.qcow2", "hs-state"), ("t-controller-data-1.qcow2", "hs-data-1"))
    )
    out = transform(tuning)
    serials = {d.find("target").get("dev"): d.findtext("serial") for d in out.iterfind("devices/disk")}
    assert serials == {"vda": None, "vdb": "hs-state", "vdc": "hs-data-1", "vdd": None, "sdd": "cloudinit"}


def test_provider_quirks_are_fixed_and_the_sheet_is_idempotent() -> None:
    tuning = plan_placement(loaded("workstation").spec)["gpu-01"]
    out = transform(tuning)
    assert out.find("devices/disk[@device='cdrom']/target").attrib == {"dev": "sdd", "bus": "sata"}
    assert out.find("devices/console").get("type") == "pty"
    again = transform(tuning, etree.tostring(out))
    assert etree.tostring(again, method="c14n") == etree.tostring(out, method="c14n")
    assert len(out.findall("cputune/vcpupin")) == 12 and len(out.findall("memtune")) == 1


def test_pinning_off_floats_and_may_overcommit() -> None:
    from config.checks import run_checks
    from config.models import ClusterSpec
    from config.presets import apply_preset
    from render.placement import plan_placement
    from tests.stacks import loaded

    raw = apply_preset(
        {"preset": "dev", "name": "dev", "ssh": {"public_keys": list(loaded("dev").spec.ssh.public_keys)}}
    )
    raw["hosts"][0].update(
        cpu={"cores_per_socket": 2}, domain_type="qemu", pinning=False, reserve={"cpus": "0", "memory_mib": 1024}
    )
    spec = ClusterSpec.model_validate(raw)
    findings = run_checks(spec)
    assert not [f for f in findings if f.is_error], findings
    assert any("float over" in f.message for f in findings)  # overcommit is a warning, not an error
    tuning = plan_placement(spec)["controller"]
    assert tuning.vcpupins == () and tuning.numa_nodes == () and tuning.cpu_mode == "maximum"
