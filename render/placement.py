"""From the cluster spec to each VM's DomainTuning: passthrough devices, pinning, NUMA, hugepages, BARs.

The CPU/NUMA/hugepage decisions are config/placement.py's (the same ones `validate` reports); this
module adds what only the domain XML needs: the hostdev list, memory locking, the 64-bit PCI hole and
the data disk serials.
"""

from __future__ import annotations

import re

from config.catalog import gpu_model
from config.findings import Finding, format_finding
from config.models import ClusterSpec, Gpu, Host
from config.pci import passthrough_functions
from config.placement import VmPlacement, place
from config.topology import NodePlan, plan_nodes
from render.domain_xslt import DomainTuning

GIB_KIB = 1024 * 1024
# Non-guest memory of a VM whose RAM VFIO pins (memtune hard_limit, which also becomes its memlock limit):
# 1 GiB is what libvirt itself allows on top of guest RAM for VFIO on x86 (QEMU, firmware, emulated
# devices); each GPU adds vfio/IOMMU bookkeeping and a copy of its option ROM, for which 256 MiB is ample.
# Without hugepages the page tables of guest RAM (host and EPT, ~8 bytes per 4 KiB each) count too.
VFIO_BASE_OVERHEAD_MIB = 1024
VFIO_PER_GPU_OVERHEAD_MIB = 256
PAGE_TABLE_DIVISOR = 256
PCIHOLE64_MIN_GIB = 64
# GPUs this large have BARs beyond what QEMU's default phys-bits (40) and OVMF's default aperture map.
MAXPHYSADDR_MIN_GPU_GIB = 16
SERIAL_MAX = 20  # virtio-blk serials are at most 20 bytes
_SERIAL_RE = re.compile(r"^[A-Za-z0-9._-]+$")


class PlacementError(Exception):
    """The spec cannot be placed; `validate` reports the same findings with their stack-file lines."""

    def __init__(self, findings: list[Finding], unplaced: list[str]) -> None:
        self.findings = findings
        lines = [format_finding("stack", f) for f in findings]
        if unplaced:
            lines.append(
                f"  error: not placed (unknown host, or more vCPUs than CPUs; run validate): {', '.join(unplaced)}"
            )
        super().__init__("cannot place the VMs:\n" + "\n".join(lines))


def gpu_functions(gpu: Gpu) -> list[str]:
    """Every function passed to the VM for one GPU: the GPU plus its companion functions."""
    return passthrough_functions(gpu.address, ((d.address, d.class_code) for d in gpu.group_devices))


def data_disk_serial(suffix: str) -> str:
    """The virtio serial of a data volume (suffix 'state', 'data-1'...): the guest finds it as
    /dev/disk/by-id/virtio-<serial>, whatever order the disks are attached in."""
    serial = f"hs-{suffix}"
    if len(serial) > SERIAL_MAX or not _SERIAL_RE.match(serial):
        raise ValueError(f"disk serial {serial!r} must be 1-{SERIAL_MAX} characters of [A-Za-z0-9._-]")
    return serial


def data_disk_suffixes(node: NodePlan) -> tuple[str, ...]:
    """Suffixes of a node's protected volumes (config/topology.py: the controller's state, a storage node's
    data-N and meta), in the order they are attached."""
    return tuple(v.suffix for v in node.volumes)


def pcihole64_kib(gpus: tuple[Gpu, ...]) -> int | None:
    """The 64-bit MMIO window for the VM's GPUs: the next power of two >= twice their memory, at least
    64 GiB. A GPU's BAR1 is a power of two at least as large as its memory and must be naturally
    aligned, so twice the memory leaves room for alignment and the small BARs."""
    total = sum(m.memory_gib for g in gpus if (m := gpu_model(g.model)) is not None)
    if not total:
        return None
    size = PCIHOLE64_MIN_GIB
    while size < 2 * total:
        size *= 2
    return size * GIB_KIB


def hard_limit_kib(memory_mib: int, gpus: int, hugepages: bool) -> int:
    overhead = VFIO_BASE_OVERHEAD_MIB + VFIO_PER_GPU_OVERHEAD_MIB * gpus
    if not hugepages:
        overhead += memory_mib // PAGE_TABLE_DIVISOR
    return (memory_mib + overhead) * 1024


def tuning_for(
    node: NodePlan, host: Host, placed: VmPlacement | None = None, cluster_name: str | None = None
) -> DomainTuning:
    """The node's tuning; placed (from config.placement) adds pinning, NUMA and hugepages, cluster_name
    the disk serials (volume names start with the libvirt domain name)."""
    topo = node.topology
    hostdevs = tuple(a for gpu in node.gpus for a in gpu_functions(gpu))
    big_gpu = any((m := gpu_model(g.model)) is not None and m.memory_gib >= MAXPHYSADDR_MIN_GPU_GIB for g in node.gpus)
    hugepage_kib = placed.hugepage_kib if placed else None
    serials: tuple[tuple[str, str], ...] = ()
    if cluster_name is not None:
        domain = f"{cluster_name}-{node.name}"
        serials = tuple((f"{domain}-{s}.qcow2", data_disk_serial(s)) for s in data_disk_suffixes(node))
    return DomainTuning(
        sockets=topo.sockets,
        cores=topo.cores,
        threads=topo.threads,
        hostdevs=hostdevs,
        cpu_mode=host.cpu_mode,
        vcpupins=tuple(enumerate(placed.cpus)) if placed else (),
        emulator_cpus=placed.emulator_cpus if placed else (),
        numa_nodes=placed.numa_nodes if placed else (),
        hugepage_kib=hugepage_kib,
        # VFIO maps all guest RAM for DMA, so it is pinned anyway; <locked/> says so and lifts the
        # memlock limit, which hard_limit then caps again.
        locked_memory=bool(hostdevs),
        hard_limit_kib=hard_limit_kib(node.memory_mib, len(node.gpus), hugepage_kib is not None) if hostdevs else None,
        pcihole64_kib=pcihole64_kib(node.gpus),
        maxphysaddr_passthrough=big_gpu,
        kvm_hidden=any(g.kvm_hidden for g in node.gpus),
        disk_serials=serials,
    )


def plan_placement(spec: ClusterSpec) -> dict[str, DomainTuning]:
    """{node name: DomainTuning} for every VM; raises PlacementError for what cannot be placed."""
    nodes = plan_nodes(spec)
    placement = place(spec, nodes)
    errors = [f for f in placement.all_findings if f.is_error]
    missing = [n.name for n in nodes if n.name not in placement.vms]
    if errors or missing:
        raise PlacementError(errors, missing)
    tunings: dict[str, DomainTuning] = {}
    for node in nodes:
        host = spec.host(node.host)
        assert host is not None  # every placed VM is on a known host
        tunings[node.name] = tuning_for(node, host, placement.vms[node.name], spec.name)
    return tunings
