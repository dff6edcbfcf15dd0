"""`hyperscaler inventory`: describe this host as a stack-file host entry (config.models.Host).

probe_host() gathers everything from sysfs/procfs (hyperscaler.probe.sysfs); inventory() keeps only
what the Host model accepts; render_inventory_yaml() prints that as YAML with comments a human needs
to check it (PCI IDs, drivers, notes about values the kernel did not give).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.types import format_cpuset
from hyperscaler.probe import pci_ids, sysfs

HUGEPAGE_SIZES_KIB = (2048, 1048576)  # the sizes config.models.Hugepages accepts
DEFAULT_HOST_NAME = "host1"


@dataclass(frozen=True)
class GroupMember:
    device: sysfs.PciDevice
    role: str  # 'companion', 'gpu', 'bridge' or 'foreign' (see config.pci.group_member_role)
    description: str


@dataclass(frozen=True)
class GpuProbe:
    device: sysfs.PciDevice
    model: str
    label: str  # human name for comments
    members: list[GroupMember]
    notes: list[str]

    @property
    def numa_node(self) -> int:
        return self.device.numa_node if self.device.numa_node is not None else 0

    @property
    def iommu_group(self) -> int | None:
        return self.device.iommu_group


@dataclass(frozen=True)
class NodeProbe:
    id: int
    cpus: list[int]
    memory_mib: int
    hugepages: list[sysfs.HugepagePool]


@dataclass(frozen=True)
class HostProbe:
    name: str
    cpu_vendor: str | None
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    online_cpus: list[int]
    memory_mib: int
    nodes: list[NodeProbe]
    hugepage_pools: list[sysfs.HugepagePool]
    hugepages_size_kib: int
    hugepages_free: int
    gpus: list[GpuProbe]
    notes: list[str] = field(default_factory=list)


def probe_host(root: Path = sysfs.ROOT, host_name: str | None = None) -> HostProbe:
    """Read the host below root. Never raises for missing files; gaps become notes."""
    notes: list[str] = []
    name = host_name or _host_name_from(root, notes)
    sockets, cores, threads, online = _cpu_shape(root, notes)
    memory_mib = _memory_mib(root, notes)
    nodes = _nodes(root, online, memory_mib, notes)
    pools = sysfs.hugepage_pools(root)
    size, free = _hugepage_choice(root, pools, notes)
    multi_node = len(nodes) > 1
    gpus = [_gpu(root, dev, multi_node) for dev in sysfs.pci_devices(root) if pci_ids.is_gpu(dev.vendor, dev.class4)]
    return HostProbe(
        name=name,
        cpu_vendor=sysfs.cpu_vendor(root),
        sockets=sockets,
        cores_per_socket=cores,
        threads_per_core=threads,
        online_cpus=online,
        memory_mib=memory_mib,
        nodes=nodes,
        hugepage_pools=pools,
        hugepages_size_kib=size,
        hugepages_free=free,
        gpus=gpus,
        notes=notes,
    )


def inventory(root: Path = sysfs.ROOT, host_name: str | None = None) -> dict[str, Any]:
    """The host entry as plain data, shaped exactly like config.models.Host."""
    return _host_entry(probe_host(root, host_name))


def render_inventory_yaml(root: Path = sysfs.ROOT, host_name: str | None = None, indent: int = 0) -> str:
    """A one-item YAML list to paste under `hyperscaler:cluster` -> `hosts:` (shift it with indent)."""
    probe = probe_host(root, host_name)
    lines = _render(probe, _host_entry(probe), str(root))
    pad = " " * indent
    return "".join(f"{pad}{line}\n" if line else "\n" for line in lines)


# --- probing ---------------------------------------------------------------------------------------


def _host_name_from(root: Path, notes: list[str]) -> str:
    # Hostname (config.types) is a lowercase DNS label; keep the short name and repair what we can.
    raw = (sysfs.hostname(root) or "").split(".")[0].lower()
    cleaned = re.sub(r"[^a-z0-9-]", "-", raw).strip("-")[:63].strip("-")
    if cleaned and cleaned[0].isalpha():
        if cleaned != raw:
            notes.append(f"host name {raw!r} adjusted to {cleaned!r} to be a valid stack-file name")
        return cleaned
    notes.append(f"no usable host name in /proc/sys/kernel/hostname; using {DEFAULT_HOST_NAME!r}, rename it")
    return DEFAULT_HOST_NAME


def _cpu_shape(root: Path, notes: list[str]) -> tuple[int, int, int, list[int]]:
    topo = sysfs.cpu_topology(root)
    online = sysfs.online_cpus(root)
    if not topo:
        count = max(len(online), 1)
        notes.append(f"no CPU topology in sysfs; assuming 1 socket of {count} single-thread cores")
        return 1, count, 1, online or list(range(count))
    online = sorted(c.cpu for c in topo)
    sockets = len({c.package for c in topo})
    # core_id is only unique within a package (and die), so a physical core is the triple.
    cores = len({(c.package, c.die, c.core) for c in topo})
    threads = max(1, len(topo) // cores)
    cores_per_socket = max(1, cores // sockets)
    if sockets * cores_per_socket * threads != len(topo):
        notes.append(
            f"uneven CPU topology ({len(topo)} online CPUs, {sockets} sockets, {cores} cores); "
            "cpu: below is rounded down, check it"
        )
    if online != list(range(len(online))):
        notes.append(f"online CPUs are {format_cpuset(online)}, not 0-{len(online) - 1}; some CPUs are offline")
    return sockets, cores_per_socket, threads, online


def _memory_mib(root: Path, notes: list[str]) -> int:
    total_kib = sysfs.meminfo(root).get("MemTotal")
    if total_kib:
        return max(1, total_kib // 1024)
    node_kib = sum(n.memory_kib or 0 for n in sysfs.numa_nodes(root))
    if node_kib:
        notes.append("no MemTotal in /proc/meminfo; memory_mib is the sum of the NUMA nodes")
        return max(1, node_kib // 1024)
    notes.append("could not read the host memory; set memory_mib by hand")
    return 1


def _nodes(root: Path, online: list[int], memory_mib: int, notes: list[str]) -> list[NodeProbe]:
    found = sysfs.numa_nodes(root)
    if not found:
        notes.append("no NUMA nodes in sysfs; reporting one node 0 with every CPU and all memory")
        return [NodeProbe(0, online, memory_mib, sysfs.hugepage_pools(root))]
    nodes: list[NodeProbe] = []
    for node in found:
        if not node.memory_kib or node.memory_kib < 1024:
            # The Host model needs memory on every node; a memoryless node cannot be described.
            notes.append(f"NUMA node {node.id} has no memory (CPUs {format_cpuset(node.cpus) or 'none'}); left out")
            continue
        if not node.cpus:
            notes.append(f"NUMA node {node.id} has no CPUs (memory-only, e.g. CXL); left out")
            continue
        nodes.append(NodeProbe(node.id, node.cpus, node.memory_kib // 1024, sysfs.hugepage_pools(root, node.id)))
    if not nodes:
        notes.append("no NUMA node has both CPUs and memory; reporting one node 0")
        return [NodeProbe(0, online, memory_mib, sysfs.hugepage_pools(root))]
    return nodes


def _hugepage_choice(root: Path, pools: list[sysfs.HugepagePool], notes: list[str]) -> tuple[int, int]:
    usable = [p for p in pools if p.size_kib in HUGEPAGE_SIZES_KIB and p.total > 0]
    for pool in pools:
        if pool.size_kib not in HUGEPAGE_SIZES_KIB and pool.total > 0:
            notes.append(f"{pool.total} hugepages of {pool.size_kib} kB are reserved but unusable here")
    if usable:
        # The pool that can back the most guest memory; on a tie prefer 1 GiB pages (fewer TLB misses).
        best = max(usable, key=lambda p: (p.free_mib, p.size_kib))
        return best.size_kib, best.free
    default = sysfs.meminfo(root).get("Hugepagesize")
    return (default if default in HUGEPAGE_SIZES_KIB else 1048576), 0


def _gpu(root: Path, dev: sysfs.PciDevice, multi_node: bool) -> GpuProbe:
    notes: list[str] = []
    label = pci_ids.gpu_marketing_name(dev.vendor, dev.device) or sysfs.pci_ids_name(root, dev.vendor, dev.device)
    model = pci_ids.gpu_model_name(dev.vendor, dev.device)
    if model.startswith(("nvidia-", "amd-")):
        notes.append(
            f"model {model!r} is not in the catalog (config/catalog.py); passthrough works, MIG and GRES need it"
        )
    if dev.numa_node is None:
        # Common on single-socket boards, where 0 is right; on several nodes it needs a human.
        consequence = "set numa_node to the socket of its slot" if multi_node else "fine with one NUMA node"
        notes.append(f"the firmware reports no NUMA node (numa_node = -1); using 0, {consequence}")
    members: list[GroupMember] = []
    if dev.iommu_group is None:
        notes.append("WARNING: no IOMMU group (IOMMU off?): it cannot be passed through; run `hyperscaler doctor`")
    else:
        for address in sysfs.iommu_group_devices(root, dev.iommu_group):
            other = sysfs.pci_device(root, address) if address != dev.address else None
            if other is not None:
                role = pci_ids.group_member_role(dev.address, other.address, other.class4)
                members.append(GroupMember(other, role, _describe(root, other)))
    return GpuProbe(dev, model, label or f"unknown {dev.vendor_device}", members, notes)


def _describe(root: Path, dev: sysfs.PciDevice) -> str:
    text = f"{pci_ids.class_name(dev.class4)} [{dev.vendor_device}]"
    name = sysfs.pci_ids_name(root, dev.vendor, dev.device)
    return f"{text}: {name}" if name else text


# --- output ----------------------------------------------------------------------------------------


def _host_entry(probe: HostProbe) -> dict[str, Any]:
    return {
        "name": probe.name,
        "cpu": {
            "sockets": probe.sockets,
            "cores_per_socket": probe.cores_per_socket,
            "threads_per_core": probe.threads_per_core,
        },
        "memory_mib": probe.memory_mib,
        "numa_nodes": [{"id": n.id, "cpus": format_cpuset(n.cpus), "memory_mib": n.memory_mib} for n in probe.nodes],
        "hugepages": {"size_kib": probe.hugepages_size_kib, "count": probe.hugepages_free},
        "gpus": [
            {
                "address": g.device.address,
                "model": g.model,
                "iommu_group": g.iommu_group,
                "numa_node": g.numa_node,
                "group_devices": [
                    {
                        "address": m.device.address,
                        "class_code": m.device.class4 or "ffff",
                        "description": m.description,
                    }
                    for m in g.members
                ],
            }
            for g in probe.gpus
        ],
    }


def _q(value: object) -> str:
    # JSON strings are valid YAML double-quoted scalars; quoting keeps '0300' and '0-7' strings.
    if value is None:
        return "null"
    return json.dumps(value) if isinstance(value, str) else str(value)


def _pools_text(pools: list[sysfs.HugepagePool]) -> str:
    shown = [f"{p.size_kib} kB: {p.free} free of {p.total}" for p in pools if p.total or p.free]
    return "; ".join(shown) if shown else "none reserved"


def _render(probe: HostProbe, entry: dict[str, Any], root: str) -> list[str]:
    out = [
        f"# hyperscaler inventory of {probe.name} (read from {root})",
        "# Paste under `hyperscaler:cluster` -> `hosts:` in Pulumi.<stack>.yaml; add uri: for a remote host.",
        f"# CPU vendor {probe.cpu_vendor or 'unknown'}, online CPUs {format_cpuset(probe.online_cpus)}",
    ]
    out += [f"# {_note(note)}" for note in probe.notes]
    cpu = entry["cpu"]
    out += [
        f"- name: {_q(entry['name'])}",
        "  cpu:",
        f"    sockets: {cpu['sockets']}",
        f"    cores_per_socket: {cpu['cores_per_socket']}",
        f"    threads_per_core: {cpu['threads_per_core']}",
        f"  memory_mib: {entry['memory_mib']}",
        "  numa_nodes:",
    ]
    for node, data in zip(probe.nodes, entry["numa_nodes"], strict=True):
        out += [
            f"    # node {node.id} hugepages: {_pools_text(node.hugepages)}",
            f"    - id: {data['id']}",
            f"      cpus: {_q(data['cpus'])}",
            f"      memory_mib: {data['memory_mib']}",
        ]
    out += [
        "  hugepages:",
        f"    # host-wide: {_pools_text(probe.hugepage_pools)}; count is the free pages of this size",
        f"    size_kib: {entry['hugepages']['size_kib']}",
        f"    count: {entry['hugepages']['count']}",
    ]
    if not probe.gpus:
        return [*out, "  gpus: []  # no NVIDIA/AMD VGA or 3D controller found"]
    out.append("  gpus:")
    for gpu, data in zip(probe.gpus, entry["gpus"], strict=True):
        dev = gpu.device
        out.append(f"    # {dev.vendor_device} {gpu.label}, driver {dev.driver or 'none'}")
        out += [f"    # {_note(note)}" for note in gpu.notes]
        out += [
            f"    - address: {_q(data['address'])}",
            f"      model: {_q(data['model'])}",
            f"      iommu_group: {_q(data['iommu_group'])}",
            f"      numa_node: {data['numa_node']}",
        ]
        if not gpu.members:
            out.append("      group_devices: []")
            continue
        out.append("      group_devices:")
        for member, member_data in zip(gpu.members, data["group_devices"], strict=True):
            out += [
                f"        # {member.device.vendor_device} {pci_ids.class_name(member.device.class4)}, "
                f"driver {member.device.driver or 'none'}: {_role_text(member.role)}",
                f"        - address: {_q(member_data['address'])}",
                f"          class_code: {_q(member_data['class_code'])}",
                f"          description: {_q(member_data['description'])}",
            ]
    return out


def _note(note: str) -> str:
    return note if note.startswith("WARNING: ") else f"NOTE: {note}"


def _role_text(role: str) -> str:
    return {
        "companion": "a function of the GPU card, passed through with it",
        "bridge": "stays with the host",
        "gpu": "another GPU in the same IOMMU group; assign both to the same VM",
    }.get(role, "NOT part of the GPU card; it blocks passthrough of this group (see `hyperscaler doctor`)")
