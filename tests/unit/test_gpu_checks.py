"""GPU passthrough checks (config/checks_gpu.py): each bad case gives a finding with its field path."""

from __future__ import annotations

from typing import Any

from config import checks_gpu
from config.checks import CHECKS, run_checks
from config.findings import Finding, Severity
from config.models import ClusterSpec
from config.pci import group_member_role
from config.topology import plan_nodes
from hyperscaler.probe import pci_ids
from render.placement import plan_placement

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR test"


def make_spec(gpus: list[dict[str, Any]], compute: list[dict[str, Any]], **host_fields: Any) -> ClusterSpec:
    host: dict[str, Any] = {
        "name": "h1",
        "cpu": {"sockets": 1, "cores_per_socket": 16, "threads_per_core": 1},
        "memory_mib": 131072,
        "reserve": {"cpus": "0", "memory_mib": 4096},
        "gpus": gpus,
        **host_fields,
    }
    return ClusterSpec.model_validate(
        {
            "name": "t",
            "hosts": [host],
            "ssh": {"public_keys": [KEY]},
            "controller": {"vcpus": 1, "memory_mib": 1024},
            "compute": compute,
            "storage": None,
        }
    )


def gpu(address: str, group: int | None, *devices: tuple[str, str], **fields: Any) -> dict[str, Any]:
    return {
        "address": address,
        "model": fields.pop("model", "rtx-4090"),
        "iommu_group": group,
        "group_devices": [{"address": a, "class_code": c} for a, c in devices],
        **fields,
    }


def group(count: int = 1, per_node: int = 1, gpus: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "g", "count": count, "vcpus": 2, "memory_mib": 4096, "gpus_per_node": per_node}
    if gpus is not None:
        data["gpus"] = gpus
    return data


def check(fn: Any, spec: ClusterSpec) -> list[Finding]:
    return list(fn(spec, plan_nodes(spec)))


def test_the_gpu_checks_run_with_validate() -> None:
    assert set(checks_gpu.GPU_CHECKS) <= set(CHECKS)


def test_probe_and_checks_share_one_classification() -> None:
    assert pci_ids.group_member_role is group_member_role
    gpu_at = "0000:01:00.0"
    assert group_member_role(gpu_at, "0000:01:00.1", "0403") == "companion"
    assert group_member_role(gpu_at, "0000:01:00.2", "0c03") == "companion"
    assert group_member_role(gpu_at, "0000:01:00.3", "0c80") == "companion"
    assert group_member_role(gpu_at, "0000:00:01.0", "0604") == "bridge"
    assert group_member_role(gpu_at, "0000:00:01.1", "0600") == "bridge"
    assert group_member_role(gpu_at, "0000:02:00.0", "0302") == "gpu"
    assert group_member_role(gpu_at, "0000:01:00.2", "0106") == "foreign"  # same slot, but SATA
    assert group_member_role(gpu_at, "0000:05:00.0", "0403") == "foreign"  # audio of another card


def test_clean_geforce_group_passes_and_companions_are_passed() -> None:
    spec = make_spec(
        [gpu("0000:01:00.0", 12, ("0000:00:01.0", "0604"), ("0000:01:00.1", "0403"), ("0000:01:00.2", "0c03"))],
        [group()],
    )
    assert [f for f in run_checks(spec) if f.path.startswith(("hosts", "compute"))] == []
    assert plan_placement(spec)["g-01"].hostdevs == ("0000:01:00.0", "0000:01:00.1", "0000:01:00.2")


def test_passthrough_needs_an_iommu_group() -> None:
    spec = make_spec([gpu("0000:01:00.0", None)], [group()])
    (finding,) = check(checks_gpu.passthrough_needs_iommu_group, spec)
    assert finding.path == "hosts[0].gpus[0].iommu_group" and finding.is_error
    assert "passed through to g-01 but has no IOMMU group" in finding.message
    # a GPU nobody uses may lack a group (e.g. pasted from a host with the IOMMU still off)
    assert check(checks_gpu.passthrough_needs_iommu_group, make_spec([gpu("0000:01:00.0", None)], [])) == []


def test_foreign_device_in_the_group_is_an_error_naming_it() -> None:
    devices = (("0000:00:1c.0", "0604"), ("0000:02:00.1", "0403"), ("0000:02:00.2", "0106"))
    spec = make_spec([gpu("0000:02:00.0", 5, *devices, model="rtx-a6000")], [group()])
    (finding,) = check(checks_gpu.iommu_group_isolation, spec)
    assert finding.path == "hosts[0].gpus[0].group_devices[2]" and finding.is_error
    assert "0000:02:00.2 (SATA controller, class 0106)" in finding.message
    assert "ACS" in finding.hint
    unused = make_spec([gpu("0000:02:00.0", 5, *devices, model="rtx-a6000")], [])
    (warning,) = check(checks_gpu.iommu_group_isolation, unused)
    assert warning.severity is Severity.WARNING and "cannot be passed through" in warning.message


def test_gpus_sharing_a_group_split_between_vms() -> None:
    gpus = [gpu("0000:03:00.0", 7, ("0000:04:00.0", "0302")), gpu("0000:04:00.0", 7, ("0000:03:00.0", "0302"))]
    (finding,) = check(checks_gpu.iommu_group_whole, make_spec(gpus, [group(count=2)]))
    assert finding.path == "hosts[0].gpus[0].iommu_group"
    assert "0000:03:00.0 -> g-01, 0000:04:00.0 -> g-02" in finding.message
    # one of them left on the host is a split too
    (left,) = check(checks_gpu.iommu_group_whole, make_spec(gpus, [group(count=1)]))
    assert "0000:04:00.0 -> no VM" in left.message
    # both to one VM is fine, and neither one lists the other as its own hostdev
    whole = make_spec(gpus, [group(count=1, per_node=2)])
    assert check(checks_gpu.iommu_group_whole, whole) == []
    assert plan_placement(whole)["g-01"].hostdevs == ("0000:03:00.0", "0000:04:00.0")


def test_unlisted_gpu_in_the_group_is_an_error() -> None:
    spec = make_spec([gpu("0000:03:00.0", 7, ("0000:04:00.0", "0300"))], [group()])
    (finding,) = check(checks_gpu.iommu_group_whole, spec)
    assert finding.path == "hosts[0].gpus[0].group_devices[0]"
    assert "display device 0000:04:00.0 (VGA controller), which is not in hosts[0].gpus" in finding.message


def test_a_function_under_two_gpus_is_an_error() -> None:
    gpus = [gpu("0000:01:00.0", 1, ("0000:01:00.1", "0403")), gpu("0000:02:00.0", 2, ("0000:01:00.1", "0403"))]
    # 0000:01:00.1 is a companion of the first GPU only (same slot); listed under the second it is foreign
    spec = make_spec(gpus, [group(count=2)])
    assert [f.path for f in check(checks_gpu.iommu_group_isolation, spec)] == ["hosts[0].gpus[1].group_devices[0]"]
    same_slot = [gpu("0000:01:00.0", 1, ("0000:01:00.1", "0403")), gpu("0000:01:00.2", 1, ("0000:01:00.1", "0403"))]
    found = check(checks_gpu.pci_function_once, make_spec(same_slot, [group(count=2)]))
    assert [f.path for f in found] == ["hosts[0].gpus[1].group_devices"]
    assert "PCI function 0000:01:00.1 would be passed through with both" in found[0].message


def test_gpu_used_twice_is_reported_by_gpu_assignment() -> None:
    spec = make_spec(
        [gpu("0000:01:00.0", 1), gpu("0000:02:00.0", 2)],
        [group(count=2, gpus=["0000:01:00.0", "0000:01:00.0"])],
    )
    found = [f for f in run_checks(spec) if "assigned to both" in f.message]
    assert [f.path for f in found] == ["compute[0].gpus"]


def test_kvm_hidden_on_a_datacenter_gpu_is_a_warning() -> None:
    spec = make_spec([gpu("0000:01:00.0", 1, model="h100-80gb", kvm_hidden=True)], [])
    (finding,) = check(checks_gpu.kvm_hidden_for_consumer_cards, spec)
    assert finding.path == "hosts[0].gpus[0].kvm_hidden" and finding.severity is Severity.WARNING
    assert (
        check(checks_gpu.kvm_hidden_for_consumer_cards, make_spec([gpu("0000:01:00.0", 1, kvm_hidden=True)], [])) == []
    )


def test_placement_concerns_have_their_own_checks() -> None:
    numa = [{"id": 0, "cpus": "0-3", "memory_mib": 65536}, {"id": 1, "cpus": "4-15", "memory_mib": 65536}]
    spec = make_spec(
        [gpu("0000:01:00.0", 1, numa_node=0)],
        [{**group(), "vcpus": 6}],
        numa_nodes=numa,
        hugepages={"size_kib": 1048576, "count": 2},
    )
    (spill,) = check(checks_gpu.gpu_numa_locality, spec)
    assert spill.path == "compute[0].vcpus" and spill.severity is Severity.WARNING
    assert "g-01 needs 6 CPUs next to its GPU on NUMA node 0 of h1; 3 are free there" in spill.message
    (fallback,) = check(checks_gpu.hugepages, spec)
    assert fallback.path == "hosts[0].hugepages.count" and fallback.severity is Severity.WARNING
    assert check(checks_gpu.cpu_pinning, spec) == [] and check(checks_gpu.normal_memory, spec) == []


def test_smt_shortage_is_an_error_of_cpu_pinning() -> None:
    spec = make_spec(
        [],
        [
            {
                "name": "c",
                "count": 1,
                "vcpus": 12,
                "memory_mib": 4096,
                "topology": {"sockets": 1, "cores": 6, "threads": 2},
            }
        ],
        cpu={"sockets": 1, "cores_per_socket": 8, "threads_per_core": 2},
        reserve={"cpus": "0,9-10", "memory_mib": 4096},
    )
    # 13 vCPUs fit the 13 free CPUs, but the reserve breaks cores 0, 1 and 2: 5 whole cores are left
    # (the controller takes CPU 8, the free half of core 0)
    (finding,) = check(checks_gpu.cpu_pinning, spec)
    assert finding.path == "compute[0].vcpus" and finding.is_error
    assert (
        "c-01 needs 6 whole cores (12 vCPUs with threads: 2) on h1; 5 are free after controller and the "
        "reserve (0,9-10)" in finding.message
    )
