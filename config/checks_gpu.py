"""Semantic checks for GPU passthrough and placement: IOMMU groups, pinning, NUMA and hugepages.

One function per concern, each yielding every Finding it sees with the field path to fix. The
placement checks report what config/placement.py decided, so `validate` shows exactly the plan that
deploys. A GPU used twice and vCPUs beyond a host's CPUs are config/checks.py's gpu_assignment and
capacity; they are not repeated here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from config.catalog import CATALOG
from config.findings import Finding, Severity
from config.models import ClusterSpec, Gpu, Host
from config.pci import class_name, group_member_role, passthrough_functions
from config.placement import Concern, place
from config.topology import NodePlan

_ACS_HINT = (
    "put the GPU in a slot wired to the CPU rather than the chipset, or enable ACS (Access Control Services) "
    "in the BIOS/UEFI setup so the devices get separate IOMMU groups; then run `hyperscaler inventory` again"
)


def _owners(host: Host, nodes: list[NodePlan]) -> dict[str, str]:
    """{GPU address: VM name} for the GPUs passed through on host."""
    return {g.address: n.name for n in nodes if n.host == host.name for g in n.gpus}


def _functions(gpu: Gpu) -> list[str]:
    return passthrough_functions(gpu.address, ((d.address, d.class_code) for d in gpu.group_devices))


def passthrough_needs_iommu_group(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    for hi, host in enumerate(spec.hosts):
        owners = _owners(host, nodes)
        for gi, gpu in enumerate(host.gpus):
            if gpu.iommu_group is None and gpu.address in owners:
                yield Finding(
                    f"hosts[{hi}].gpus[{gi}].iommu_group",
                    f"GPU {gpu.address} is passed through to {owners[gpu.address]} but has no IOMMU group "
                    f"(the IOMMU of {host.name} is off)",
                    "enable VT-d (Intel) or AMD-Vi (AMD) in the BIOS/UEFI setup, add intel_iommu=on iommu=pt on "
                    "Intel, reboot, and copy iommu_group from `hyperscaler inventory` (`hyperscaler doctor` checks)",
                )


def pci_function_once(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """No PCI function goes to the VMs twice, e.g. one audio function listed under two GPUs."""
    for hi, host in enumerate(spec.hosts):
        owners = _owners(host, nodes)
        claimed: dict[str, str] = {}
        for gi, gpu in enumerate(host.gpus):
            if gpu.address not in owners:
                continue
            for address in _functions(gpu):
                first = claimed.setdefault(address, gpu.address)
                if first != gpu.address:
                    yield Finding(
                        f"hosts[{hi}].gpus[{gi}].group_devices",
                        f"PCI function {address} would be passed through with both GPU {first} and GPU {gpu.address}",
                        "list each function under the one GPU whose card it belongs to (copy from `inventory`)",
                    )


def iommu_group_whole(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """An IOMMU group goes to exactly one VM: GPUs sharing a group are not split or left behind."""
    for hi, host in enumerate(spec.hosts):
        owners = _owners(host, nodes)
        by_group: dict[int, list[int]] = defaultdict(list)
        for gi, gpu in enumerate(host.gpus):
            if gpu.iommu_group is not None:
                by_group[gpu.iommu_group].append(gi)
        for group, indexes in sorted(by_group.items()):
            gpus = [host.gpus[i] for i in indexes]
            if len(gpus) < 2 or not any(g.address in owners for g in gpus):
                continue
            if len({owners.get(g.address) for g in gpus}) > 1:
                split = ", ".join(f"{g.address} -> {owners.get(g.address, 'no VM')}" for g in gpus)
                yield Finding(
                    f"hosts[{hi}].gpus[{indexes[0]}].iommu_group",
                    f"IOMMU group {group} on {host.name} holds {len(gpus)} GPUs but they would be split ({split}); "
                    "a group can only be passed through whole, to one VM",
                    "give all GPUs of the group to the same VM (gpus_per_node and explicit compute[].gpus), or "
                    + _ACS_HINT,
                )
        listed = {g.address for g in host.gpus}
        for gi, gpu in enumerate(host.gpus):
            if gpu.address not in owners:
                continue
            for di, dev in enumerate(gpu.group_devices):
                role = group_member_role(gpu.address, dev.address, dev.class_code)
                if role == "gpu" and dev.address not in listed:
                    yield Finding(
                        f"hosts[{hi}].gpus[{gi}].group_devices[{di}]",
                        f"IOMMU group {gpu.iommu_group} of GPU {gpu.address} also holds the display device "
                        f"{dev.address} ({class_name(dev.class_code)}), which is not in hosts[{hi}].gpus, so the "
                        "group would not be passed whole",
                        f"add {dev.address} to hosts[{hi}].gpus and give it to {owners[gpu.address]} too, or "
                        + _ACS_HINT,
                    )


def iommu_group_isolation(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """A GPU's group holds nothing but the card's functions and bridges (no SATA controller, no NIC)."""
    for hi, host in enumerate(spec.hosts):
        owners = _owners(host, nodes)
        for gi, gpu in enumerate(host.gpus):
            for di, dev in enumerate(gpu.group_devices):
                if group_member_role(gpu.address, dev.address, dev.class_code) != "foreign":
                    continue
                what = f"{dev.address} ({class_name(dev.class_code)}, class {dev.class_code})"
                if gpu.address in owners:
                    yield Finding(
                        f"hosts[{hi}].gpus[{gi}].group_devices[{di}]",
                        f"IOMMU group {gpu.iommu_group} of GPU {gpu.address} (for {owners[gpu.address]}) also "
                        f"holds {what}, which is not part of the card: passthrough would take it from the host, "
                        "and QEMU refuses the group while the host uses it",
                        _ACS_HINT,
                    )
                else:
                    yield Finding(
                        f"hosts[{hi}].gpus[{gi}].group_devices[{di}]",
                        f"GPU {gpu.address} cannot be passed through: its IOMMU group {gpu.iommu_group} also "
                        f"holds {what}",
                        _ACS_HINT,
                        Severity.WARNING,
                    )


def kvm_hidden_for_consumer_cards(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    for hi, host in enumerate(spec.hosts):
        for gi, gpu in enumerate(host.gpus):
            model = CATALOG.get(gpu.model)
            if gpu.kvm_hidden and model is not None and not model.consumer:
                yield Finding(
                    f"hosts[{hi}].gpus[{gi}].kvm_hidden",
                    f"kvm_hidden is set for a {model.description}; only GeForce cards with pre-R465 drivers need it",
                    "remove kvm_hidden (hiding KVM also hides paravirtual features from the guest)",
                    Severity.WARNING,
                )


def _placement_findings(spec: ClusterSpec, nodes: list[NodePlan], concern: Concern) -> Iterator[Finding]:
    yield from place(spec, nodes).findings[concern]


def cpu_pinning(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """Every vCPU gets its own host CPU outside the reserve (whole cores for threads: 2); no overlap."""
    yield from _placement_findings(spec, nodes, Concern.CPUS)


def gpu_numa_locality(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """A GPU VM's vCPUs and memory on its GPU's NUMA node; warnings say what spilled where."""
    yield from _placement_findings(spec, nodes, Concern.NUMA)


def hugepages(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """Compute VMs in hugepages while the pool lasts; warnings name the VMs that fall back."""
    yield from _placement_findings(spec, nodes, Concern.HUGEPAGES)


def normal_memory(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """VMs on normal pages fit in what the hugepage pool and the reserve leave."""
    yield from _placement_findings(spec, nodes, Concern.MEMORY)


GPU_CHECKS = (
    passthrough_needs_iommu_group,
    pci_function_once,
    iommu_group_whole,
    iommu_group_isolation,
    kvm_hidden_for_consumer_cards,
    cpu_pinning,
    gpu_numa_locality,
    hugepages,
    normal_memory,
)
