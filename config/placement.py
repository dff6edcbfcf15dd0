"""Where each VM runs on its host: dedicated CPUs, NUMA nodes and hugepages.

Pure and deterministic. config/checks_gpu.py turns its findings into `validate` output and
render/placement.py turns its result into domain XML, so what is checked is exactly what is deployed.

Policy (docs/gpu.md explains it for users):

* Every VM is pinned, each vCPU to its own host CPU, and no host CPU serves two VMs. Hosts are not
  overcommitted (checks.capacity refuses more vCPUs than CPUs minus the reserve), so dedicated CPUs for
  all VMs always exist and nobody's vCPUs float over another VM's cores.
* The reserved CPUs (hosts[].reserve.cpus) never run vCPUs; they run QEMU's emulator threads.
* VMs are placed in this order: the controller and storage VMs, compute VMs with GPUs, other compute
  VMs; within each of those, VMs that need whole cores (below) go first. Service VMs take CPUs from the
  top of the nodes with the fewest GPUs, compute VMs from the bottom, so scaling compute never moves a
  service VM: a changed pinning changes the domain XSLT, and that replaces the VM.
* A GPU VM prefers the NUMA node(s) of its GPUs. When too few CPUs are free there it spills the rest to
  other nodes, with a warning. Other VMs go to the node with the most free CPUs.
* SMT: the Host model has no sibling lists, so we assume the numbering Linux gives x86 CPUs: CPU n and
  CPU n + sockets*cores_per_socket are threads of one core (and n + 2*that, ... for more threads).
  A VM whose topology says threads: 2 gets whole cores, vCPUs 2k and 2k+1 on the two threads of one
  core, because that is what its guest (and SLURM) is told; no whole core left is an error. Other VMs
  fill whole cores first too, so two VMs share a physical core only for odd leftovers.
* Memory is bound (numatune strict) to the nodes of the VM's CPUs. When those nodes lack the memory
  the binding widens to more nodes, with a warning.
* Hugepages back compute VMs (GPU VMs first) while the pool lasts; a VM that does not fit falls back to
  normal pages with a warning. Service VMs use normal pages. Boot-time hugepages are spread evenly
  over NUMA nodes by the kernel, so hosts[].hugepages.count is split evenly here. The pool is not
  available for normal pages, so normal-page VMs must fit in memory minus the pool minus the reserve.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass, field

from config.findings import Finding, Severity
from config.models import ClusterSpec, Host
from config.topology import NodePlan, Role, plan_nodes
from config.types import format_cpuset


class Concern(enum.StrEnum):
    """What a placement finding is about; each has its own check in config/checks_gpu.py."""

    CPUS = "cpus"  # not enough (whole) cores to pin without overlap
    NUMA = "numa"  # a GPU VM's CPUs or a VM's memory spill off the preferred node
    HUGEPAGES = "hugepages"  # a VM falls back to normal pages
    MEMORY = "memory"  # normal memory short once the hugepage pool and the reserve are taken


@dataclass(frozen=True)
class VmPlacement:
    name: str
    host: str
    cpus: tuple[int, ...]  # host CPU of each vCPU, indexed by vCPU number; empty when not placed
    numa_nodes: tuple[int, ...]  # memory binding (strict)
    emulator_cpus: tuple[int, ...]
    hugepage_kib: int | None  # page size backing the guest, None for normal pages
    memory_mib: int


@dataclass(frozen=True)
class Placement:
    vms: dict[str, VmPlacement]
    findings: dict[Concern, tuple[Finding, ...]]
    unplaced_hosts: tuple[str, ...] = ()  # hosts whose VMs were not pinned (an error elsewhere says why)

    @property
    def all_findings(self) -> list[Finding]:
        return [f for found in self.findings.values() for f in found]

    def memory_on(self, host: str) -> tuple[int, int]:
        """(hugepage-backed MiB, normal MiB) of guest memory placed on host."""
        vms = [v for v in self.vms.values() if v.host == host]
        huge = sum(v.memory_mib for v in vms if v.hugepage_kib)
        return huge, sum(v.memory_mib for v in vms) - huge


def sibling_cores(host: Host) -> dict[int, tuple[int, ...]]:
    """{cpu: the CPUs of its physical core}, from the kernel numbering assumption (module docstring)."""
    per_thread = host.cpu.sockets * host.cpu.cores_per_socket
    threads = host.cpu.threads_per_core
    node_of = {cpu: n.id for n in host.numa_nodes for cpu in n.cpu_list}
    cores: dict[int, tuple[int, ...]] = {}
    for cpu in range(host.cpu.logical_cpus):
        first = cpu % per_thread
        siblings = [first + t * per_thread for t in range(threads)]
        # A sibling on another NUMA node means the numbering differs from the assumption: no pairing.
        same_node = tuple(s for s in siblings if node_of.get(s) == node_of.get(cpu))
        cores[cpu] = same_node if threads > 1 else (cpu,)
    return cores


@dataclass
class _HostState:
    host: Host
    index: int
    free: set[int]
    node_of: dict[int, int]
    cores: dict[int, tuple[int, ...]]
    hugepages_free: dict[int, int]  # pages per NUMA node
    normal_free: dict[int, int]  # MiB per NUMA node
    users: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))  # node -> VMs with CPUs there

    def node_ids(self) -> list[int]:
        return [n.id for n in self.host.numa_nodes]

    def free_on(self, node: int) -> list[int]:
        return sorted(c for c in self.free if self.node_of[c] == node)

    def whole_cores_on(self, node: int, top: bool = False) -> list[tuple[int, ...]]:
        """Free whole cores of node, lowest first (highest first with top)."""
        threads = self.host.cpu.threads_per_core
        seen: list[tuple[int, ...]] = []
        for cpu in self.free_on(node):
            core = self.cores[cpu]
            if len(core) == threads and core not in seen and all(c in self.free for c in core):
                seen.append(core)
        return seen[::-1] if top else seen

    def take_whole_cores(self, node: int, count: int, top: bool = False) -> list[int]:
        picked = [c for core in self.whole_cores_on(node, top)[:count] for c in core]
        self.free.difference_update(picked)
        return picked

    def take_cpus(self, node: int, count: int, top: bool = False) -> list[int]:
        """count CPUs of node: whole cores while a whole core is still needed, then the free halves of
        partly used cores, then a thread of a whole core."""
        picked: list[int] = []
        whole = self.whole_cores_on(node, top)
        for core in whole:
            if count - len(picked) >= len(core):
                picked.extend(core)
        in_whole = {c for core in whole for c in core}
        partial = [c for c in self.free_on(node) if c not in in_whole]
        if top:
            partial.reverse()
        rest = [c for core in whole for c in core if c not in picked]
        for cpu in partial + rest:
            if len(picked) >= count:
                break
            picked.append(cpu)
        self.free.difference_update(picked)
        return picked


def _even_split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _host_state(spec: ClusterSpec, index: int) -> _HostState | None:
    host = spec.hosts[index]
    numa_cpus = [c for n in host.numa_nodes for c in n.cpu_list]
    if len(numa_cpus) != len(set(numa_cpus)) or set(numa_cpus) != set(host.cpu_list):
        return None  # checks.capacity reports the bad NUMA lists
    reserved = set(host.reserved_cpus)
    nodes = host.numa_nodes
    pages = _even_split(host.hugepages.count, len(nodes))
    page_mib = host.hugepages.size_kib // 1024
    total_node_mib = sum(n.memory_mib for n in nodes)
    reserve = [host.reserve.memory_mib * n.memory_mib // total_node_mib for n in nodes]
    reserve[0] += host.reserve.memory_mib - sum(reserve)
    return _HostState(
        host=host,
        index=index,
        free=set(numa_cpus) - reserved,
        node_of={c: n.id for n in nodes for c in n.cpu_list},
        cores=sibling_cores(host),
        hugepages_free={n.id: p for n, p in zip(nodes, pages, strict=True)},
        normal_free={
            n.id: max(0, n.memory_mib - p * page_mib - r) for n, p, r in zip(nodes, pages, reserve, strict=True)
        },
    )


def _paired(node: NodePlan, host: Host) -> bool:
    """Whether the VM's guest threads must sit on the threads of one host core."""
    return node.topology.threads > 1 and node.topology.threads == host.cpu.threads_per_core


def _order(nodes: list[NodePlan], host: Host) -> list[NodePlan]:
    def rank(node: NodePlan) -> tuple[int, int]:
        role = (1 if node.gpus else 2) if node.role is Role.COMPUTE else 0
        # Within a rank, VMs that need whole cores go before single-thread VMs, whose odd leftovers
        # would otherwise break up cores.
        return role, 0 if _paired(node, host) else 1

    return sorted(nodes, key=rank)  # stable: plan order within a rank


def _after(names: list[str], *extra: str) -> str:
    """'gpu-01, cpu-01 and the reserve' / 'the reserve'."""
    parts = [*names, *extra]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else (parts[0] if parts else "nothing")


class _Planner:
    def __init__(self, spec: ClusterSpec, nodes: list[NodePlan]) -> None:
        self.spec = spec
        self.nodes = nodes
        self.findings: dict[Concern, list[Finding]] = {c: [] for c in Concern}
        self.vms: dict[str, VmPlacement] = {}
        self.unplaced: list[str] = []

    def add(self, concern: Concern, finding: Finding) -> None:
        self.findings[concern].append(finding)

    def run(self) -> Placement:
        by_host: dict[str, list[NodePlan]] = defaultdict(list)
        for node in self.nodes:
            by_host[node.host].append(node)
        for index, host in enumerate(self.spec.hosts):
            placed = by_host.get(host.name, [])
            if not placed:
                continue
            if not host.pinning:
                # Floating vCPUs: no pinning, NUMA binding or hugepages to plan.
                for node in placed:
                    self.vms[node.name] = VmPlacement(node.name, host.name, (), (), (), None, node.memory_mib)
                continue
            state = _host_state(self.spec, index)
            over_cpus = sum(n.vcpus for n in placed) > host.usable_cpus
            if state is None or over_cpus:
                self.unplaced.append(host.name)  # checks.capacity says why
                continue
            over_memory = sum(n.memory_mib for n in placed) > host.usable_memory_mib
            for node in _order(placed, host):
                self.place(state, node, report_memory=not over_memory)
        return Placement(
            vms=dict(self.vms),
            findings={c: tuple(f) for c, f in self.findings.items()},
            unplaced_hosts=tuple(self.unplaced),
        )

    # --- CPUs ------------------------------------------------------------------------------------------

    def place(self, state: _HostState, node: NodePlan, *, report_memory: bool) -> None:
        host = state.host
        gpu_nodes = sorted({g.numa_node for g in node.gpus if g.numa_node in state.node_ids()})
        cpus = self.pin(state, node, gpu_nodes)
        used_nodes = sorted({state.node_of[c] for c in cpus})
        for numa in used_nodes:
            state.users[numa].append(node.name)
        if not used_nodes:
            used_nodes = gpu_nodes[:1] or state.node_ids()[:1]
        numa_nodes, hugepage_kib = self.memory(state, node, used_nodes, report=report_memory)
        self.vms[node.name] = VmPlacement(
            name=node.name,
            host=host.name,
            cpus=tuple(cpus),
            numa_nodes=tuple(numa_nodes),
            emulator_cpus=tuple(c for c in host.reserved_cpus if c < host.cpu.logical_cpus),
            hugepage_kib=hugepage_kib,
            memory_mib=node.memory_mib,
        )

    @staticmethod
    def node_order(state: _HostState, gpu_nodes: list[int], paired: bool, service: bool) -> list[int]:
        def room(numa: int) -> int:
            return len(state.whole_cores_on(numa)) if paired else len(state.free_on(numa))

        if service:
            # Keep out of the way of GPU VMs: nodes with the fewest GPUs first.
            gpus = {n: sum(1 for g in state.host.gpus if g.numa_node == n) for n in state.node_ids()}
            return sorted(state.node_ids(), key=lambda n: (gpus[n], -room(n), n))
        others = sorted((n for n in state.node_ids() if n not in gpu_nodes), key=lambda n: (-room(n), n))
        return sorted(gpu_nodes, key=lambda n: (-room(n), n)) + others

    def pin(self, state: _HostState, node: NodePlan, gpu_nodes: list[int]) -> list[int]:
        host = state.host
        threads = node.topology.threads
        paired = _paired(node, host)
        unit = threads if paired else 1
        needed = node.vcpus // unit
        # Service VMs go first and take CPUs from the top, compute VMs from the bottom: adding or
        # resizing compute VMs then never moves (and so never replaces) the controller or storage VMs.
        service = node.role is not Role.COMPUTE
        order = self.node_order(state, gpu_nodes, paired, service)
        before = {n: (len(state.whole_cores_on(n)) if paired else len(state.free_on(n))) for n in order}
        picked: list[int] = []
        got = 0
        for numa in order:
            if got >= needed:
                break
            take = min(needed - got, before[numa])
            if take <= 0:
                continue
            picked += state.take_whole_cores(numa, take, service) if paired else state.take_cpus(numa, take, service)
            got += take
        what = "whole cores" if paired else "CPUs"
        path = f"{node.path}.vcpus"
        if got < needed:
            # Total CPUs fit (checks.capacity passed), so only SMT pairing can be short here.
            state.free.update(picked)
            reserve = f"the reserve ({host.reserve.cpus or 'none'})"
            self.add(
                Concern.CPUS,
                Finding(
                    path,
                    f"{node.name} needs {needed} {what} ({node.vcpus} vCPUs with threads: {threads}) on "
                    f"{host.name}; {got} are free after "
                    f"{_after(self.placed_on(host.name), reserve)}",
                    "set topology threads: 1 so vCPUs need not pair up, lower vcpus, or move a VM to another host",
                ),
            )
            return []
        if gpu_nodes:
            local = sum(1 for c in picked if state.node_of[c] in gpu_nodes) // unit
            if local < needed:
                elsewhere = sorted({state.node_of[c] for c in picked} - set(gpu_nodes))
                where = ",".join(map(str, gpu_nodes))
                self.add(
                    Concern.NUMA,
                    Finding(
                        path,
                        f"{node.name} needs {needed} {what} next to its GPU on NUMA node {where} of {host.name}; "
                        f"{local} are free there after {_after(self._users(state, gpu_nodes), 'the reserve')}, "
                        f"so {(needed - local) * unit} vCPUs run on node {','.join(map(str, elsewhere))} "
                        "(slower host-to-GPU copies)",
                        f"lower vcpus, move a VM off node {where}, or reserve fewer CPUs there",
                        Severity.WARNING,
                    ),
                )
        return self.vcpu_order(state, picked, paired)

    @staticmethod
    def vcpu_order(state: _HostState, picked: list[int], paired: bool) -> list[int]:
        # Guest vCPU numbering is socket-major, then core, then thread: vCPUs 2k and 2k+1 are the two
        # threads of one guest core, so they get the two threads of one host core.
        if paired:
            seen: list[tuple[int, ...]] = []
            for cpu in picked:
                if state.cores[cpu] not in seen:
                    seen.append(state.cores[cpu])
            return [c for core in seen for c in core]
        return sorted(picked, key=lambda c: (state.node_of[c], state.cores[c], c))

    def placed_on(self, host: str) -> list[str]:
        return [v.name for v in self.vms.values() if v.host == host]

    @staticmethod
    def _users(state: _HostState, numa_nodes: list[int]) -> list[str]:
        return sorted({u for n in numa_nodes for u in state.users.get(n, [])})

    # --- memory ----------------------------------------------------------------------------------------

    def memory(
        self, state: _HostState, node: NodePlan, numa_nodes: list[int], *, report: bool
    ) -> tuple[list[int], int | None]:
        host = state.host
        hp = host.hugepages
        page_mib = hp.size_kib // 1024
        label = "1 GiB" if hp.size_kib == 1048576 else "2 MiB"
        if node.role is Role.COMPUTE and hp.count > 0:
            if node.memory_mib % page_mib:
                self.add(
                    Concern.HUGEPAGES,
                    Finding(
                        f"{node.path}.memory_mib",
                        f"{node.name}'s {node.memory_mib} MiB is not a multiple of the {label} hugepage size, "
                        "so it uses normal pages",
                        f"make memory_mib a multiple of {page_mib}",
                        Severity.WARNING,
                    ),
                )
            else:
                pages = node.memory_mib // page_mib
                free = sum(state.hugepages_free[n] for n in numa_nodes)
                if pages <= free:
                    for n in numa_nodes:
                        used = min(pages, state.hugepages_free[n])
                        state.hugepages_free[n] -= used
                        pages -= used
                    return numa_nodes, hp.size_kib
                short = pages - free
                self.add(
                    Concern.HUGEPAGES,
                    Finding(
                        f"hosts[{state.index}].hugepages.count",
                        f"{node.name} needs {node.memory_mib // page_mib} {label} hugepages on NUMA node "
                        f"{format_cpuset(numa_nodes)} of {host.name}; {free} are left there of the "
                        f"{hp.count} host-wide (assumed spread evenly over {len(state.node_ids())} NUMA nodes), "
                        "so it uses normal pages",
                        f"raise hugepages.count by {short * len(state.node_ids())} (and reserve them at boot), "
                        "or lower memory_mib",
                        Severity.WARNING,
                    ),
                )
        return self.normal_memory(state, node, numa_nodes, report=report), None

    def normal_memory(self, state: _HostState, node: NodePlan, numa_nodes: list[int], *, report: bool) -> list[int]:
        host = state.host
        need = node.memory_mib
        bound = list(numa_nodes)
        extra = sorted((n for n in state.node_ids() if n not in bound), key=lambda n: (-state.normal_free[n], n))
        while sum(state.normal_free[n] for n in bound) < need and extra:
            bound.append(extra.pop(0))
        free = sum(state.normal_free[n] for n in bound)
        if free < need:
            if report:
                pool = host.hugepages.count * host.hugepages.size_kib // 1024
                eligible = node.role is Role.COMPUTE
                self.add(
                    Concern.MEMORY,
                    Finding(
                        f"{node.path}.memory_mib",
                        f"{node.name} needs {need} MiB of normal (non-hugepage) memory on {host.name}; "
                        f"{free} MiB are left after "
                        + _after(
                            self.placed_on(host.name),
                            f"the {pool} MiB hugepage pool",
                            f"the {host.reserve.memory_mib} MiB reserve",
                        ),
                        (
                            f"raise hosts[{state.index}].hugepages.count so {node.name} fits in hugepages (see the "
                            "hugepages warning), lower memory_mib, or move a VM to another host"
                            if eligible and host.hugepages.count
                            else f"lower hosts[{state.index}].hugepages.count (service VMs use normal pages), lower "
                            "memory_mib, or move a VM to another host"
                            if host.hugepages.count
                            else "lower memory_mib or move a VM to another host"
                        ),
                    ),
                )
            return sorted(bound)
        if len(bound) > len(numa_nodes):
            self.add(
                Concern.NUMA,
                Finding(
                    f"{node.path}.memory_mib",
                    f"{node.name}'s {need} MiB do not fit the free memory of NUMA node "
                    f"{format_cpuset(numa_nodes)} of {host.name}; its memory also comes from node "
                    f"{format_cpuset(bound[len(numa_nodes) :])}",
                    "lower memory_mib or move a VM off that node",
                    Severity.WARNING,
                ),
            )
        for n in bound:
            used = min(need, state.normal_free[n])
            state.normal_free[n] -= used
            need -= used
        return sorted(bound)


def place(spec: ClusterSpec, nodes: list[NodePlan] | None = None) -> Placement:
    """Pin every VM of spec; findings say what is short or what fell back."""
    return _Planner(spec, nodes if nodes is not None else plan_nodes(spec)).run()
