"""The concrete nodes a ClusterSpec describes: names, roles, hosts, addresses, MACs and GPUs.

Pure and deterministic, so the plan, the renderers and the components all agree on every address
without waiting for a deploy-time Output.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field

from config.models import ClusterSpec, Gpu, VmTopology
from config.models.nodes import VmSpec

COMPUTE_FIRST_OFFSET = 100
# A node answers to its name on the management network and to <name>-ib on the interconnect.
INTERCONNECT_SUFFIX = "-ib"


class Role(enum.StrEnum):
    CONTROLLER = "controller"
    COMPUTE = "compute"
    STORAGE = "storage"


@dataclass(frozen=True)
class DataVolume:
    """A protected volume of a node: the controller's state, a storage node's data-N and BeeGFS meta.
    `suffix` names it (the volume, its child resource and its disk serial): keep it stable."""

    suffix: str
    size_gib: int


@dataclass(frozen=True)
class NodePlan:
    name: str
    role: Role
    group: str  # compute/storage group name; the controller's own name
    index: int  # 1-based position in its group
    host: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    image: str
    topology: VmTopology
    address_offset: int
    mgmt_ip: str
    ic_ip: str
    mgmt_mac: str
    ic_mac: str
    gpus: tuple[Gpu, ...] = ()
    volumes: tuple[DataVolume, ...] = ()
    path: str = ""  # where in the stack file this node comes from, for findings
    features: tuple[str, ...] = field(default=())

    @property
    def ic_name(self) -> str:
        return self.name + INTERCONNECT_SUFFIX


def node_name(group: str, index: int) -> str:
    """compute-01 ... compute-99, compute-100: a node's name depends on its position only, never on the
    group's size, so growing a group past 99 renames (and replaces) no existing node."""
    return f"{group}-{index:02d}"


def mac_for(cluster: str, node: str, network: str) -> str:
    """A stable, locally administered MAC in QEMU's 52:54:00 range, derived from names."""
    digest = hashlib.sha256(f"{cluster}/{node}/{network}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def compute_offsets(spec: ClusterSpec) -> list[int]:
    """First address offset of each compute group: explicit, or right after the previous group."""
    offsets: list[int] = []
    nxt = COMPUTE_FIRST_OFFSET
    for group in spec.compute:
        first = group.address_offset if group.address_offset is not None else nxt
        offsets.append(first)
        nxt = first + group.count
    return offsets


def _host_name(spec: ClusterSpec, requested: str | None) -> str:
    return requested if requested is not None else spec.hosts[0].name


def assign_gpus(spec: ClusterSpec) -> dict[tuple[int, int], tuple[str, ...]]:
    """{(group index, node index): GPU addresses}. Explicit lists win; otherwise free GPUs of the host,
    preferring one NUMA node per VM so its vCPUs can be pinned next to its GPUs."""
    result: dict[tuple[int, int], tuple[str, ...]] = {}
    taken: set[tuple[str, str]] = set()
    for gi, group in enumerate(spec.compute):
        if group.gpus:
            for ni in range(group.count):
                chunk = group.gpus[ni * group.gpus_per_node : (ni + 1) * group.gpus_per_node]
                result[(gi, ni)] = tuple(chunk)
                taken.update((_host_name(spec, group.host), a) for a in chunk)
    for gi, group in enumerate(spec.compute):
        if group.gpus or group.gpus_per_node == 0:
            continue
        host = spec.host(group.host)
        if host is None:
            continue
        for ni in range(group.count):
            free = [g for g in host.gpus if (host.name, g.address) not in taken]
            by_node: dict[int, list[Gpu]] = {}
            for g in free:
                by_node.setdefault(g.numa_node, []).append(g)
            fitting = [gs for _, gs in sorted(by_node.items()) if len(gs) >= group.gpus_per_node]
            pick = (fitting[0] if fitting else free)[: group.gpus_per_node]
            # a short pick is reported by checks.gpu_assignment; assign what exists so paths stay useful
            result[(gi, ni)] = tuple(g.address for g in pick)
            taken.update((host.name, g.address) for g in pick)
    return result


def storage_volumes(spec: ClusterSpec) -> tuple[DataVolume, ...]:
    """A storage node's data volumes (data-1...), and its BeeGFS metadata volume (meta) on that backend."""
    st = spec.storage
    if st is None:
        return ()
    data = tuple(DataVolume(f"data-{i + 1}", size) for i, size in enumerate(st.data_disks_gib))
    return data + ((DataVolume("meta", st.beegfs.metadata_gib),) if st.backend == "beegfs" else ())


def plan_nodes(spec: ClusterSpec) -> list[NodePlan]:
    """Every VM of the cluster in a stable order: controller, storage, compute groups."""
    mgmt, ic = spec.networks.management, spec.networks.interconnect
    nodes: list[NodePlan] = []

    def make(
        name: str, role: Role, group: str, index: int, vm: VmSpec, offset: int, path: str, **extra: object
    ) -> NodePlan:
        host_name = _host_name(spec, vm.host)
        return NodePlan(
            name=name,
            role=role,
            group=group,
            index=index,
            host=host_name,
            vcpus=vm.vcpus,
            memory_mib=vm.memory_mib,
            disk_gib=vm.disk_gib,
            image=vm.image,
            topology=vm.guest_topology,
            address_offset=offset,
            mgmt_ip=mgmt.host_address(offset),
            ic_ip=ic.host_address(offset),
            mgmt_mac=mac_for(spec.name, name, "mgmt"),
            ic_mac=mac_for(spec.name, name, "ic"),
            path=path,
            **extra,  # type: ignore[arg-type]
        )

    ctl = spec.controller
    state = (DataVolume("state", ctl.state_disk_gib),)
    nodes.append(make(ctl.name, Role.CONTROLLER, ctl.name, 1, ctl, ctl.address_offset, "controller", volumes=state))
    if spec.storage is not None and spec.storage.count:
        st = spec.storage
        for i in range(st.count):
            nodes.append(
                make(
                    node_name(st.name, i + 1),
                    Role.STORAGE,
                    st.name,
                    i + 1,
                    st,
                    st.address_offset + i,
                    "storage",
                    volumes=storage_volumes(spec),
                )
            )
    gpu_map = assign_gpus(spec)
    offsets = compute_offsets(spec)
    for gi, group in enumerate(spec.compute):
        host = spec.host(group.host)
        for i in range(group.count):
            addrs = gpu_map.get((gi, i), ())
            gpus = tuple(g for a in addrs if host is not None and (g := host.gpu(a)) is not None)
            nodes.append(
                make(
                    node_name(group.name, i + 1),
                    Role.COMPUTE,
                    group.name,
                    i + 1,
                    group,
                    offsets[gi] + i,
                    f"compute[{gi}]",
                    gpus=gpus,
                    features=tuple(group.features),
                )
            )
    return nodes
