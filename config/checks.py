"""Semantic checks: the second tier after the schema. Each check yields every finding it sees, with
the field path, so a user fixes a stack file in one round instead of one error at a time."""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator

from config.catalog import CATALOG
from config.checks_containers import CONTAINER_CHECKS
from config.checks_gpu import GPU_CHECKS
from config.checks_mig import MIG_CHECKS
from config.checks_monitoring import MONITORING_CHECKS
from config.findings import Finding, Severity, brief
from config.images import image_virtual_size_gib
from config.models import ClusterSpec
from config.models.nodes import VmSpec
from config.models.storage import MIN_TARGET_GIB
from config.slurm_facts import (
    MAX_JOB_ID,
    OPTION_NAMES,
    OPTION_RULES,
    OWNED_KEYS,
    OWNED_PARTITION_KEYS,
    PARTITION_OPTION_NAMES,
    PARTITION_OPTION_RULES,
    Rule,
)
from config.storage_layout import TARGETS_PER_NODE, mgmtd_node, storage_nodes, storage_targets
from config.topology import INTERCONNECT_SUFFIX, NodePlan, Role, assign_gpus, plan_nodes
from config.types import HOSTNAME_MAX

MIN_REAL_MEMORY_MIB = 256  # below this SLURM's RealMemory cannot run a job; render/slurm.py uses it too

Check = Callable[[ClusterSpec, list[NodePlan]], Iterable[Finding]]


def _vms(spec: ClusterSpec) -> Iterator[tuple[str, VmSpec]]:
    """(path, section) of every VM-declaring section."""
    yield "controller", spec.controller
    if spec.storage is not None:
        yield "storage", spec.storage
    for i, group in enumerate(spec.compute):
        yield f"compute[{i}]", group


def _vm_paths(spec: ClusterSpec) -> Iterator[tuple[str, str | None]]:
    """(path, requested host) of every VM-declaring section."""
    for path, vm in _vms(spec):
        yield path, vm.host


def unique_names(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    for name, n in Counter(h.name for h in spec.hosts).items():
        if n > 1:
            yield Finding("hosts", f"host name {name!r} is used {n} times", "give every host its own name")
    groups = Counter(g.name for g in spec.compute)
    for i, group in enumerate(spec.compute):
        if groups[group.name] > 1:
            yield Finding(
                f"compute[{i}].name",
                f"compute group name {group.name!r} is used more than once",
                "give every compute group its own name",
            )
    seen: dict[str, str] = {}
    domain = spec.networks.management.domain
    for node in nodes:
        longest = node.ic_name
        if len(longest) > HOSTNAME_MAX:
            yield Finding(
                f"{node.path}.name",
                f"node {node.name!r} also answers to {longest!r}, which is longer than {HOSTNAME_MAX} characters",
                f"shorten the name to at most {HOSTNAME_MAX - len(INTERCONNECT_SUFFIX)} characters",
            )
        elif len(f"{longest}.{domain}") > 253:
            yield Finding(
                "networks.management.domain",
                f"{longest}.{domain} is longer than the 253 characters a DNS name may have",
                "use a shorter domain",
            )
        if node.name in seen and seen[node.name] != node.path:
            yield Finding(
                f"{node.path}.name",
                f"node name {node.name!r} is also produced by {seen[node.name]}",
                "rename one of them; node names must be unique across the cluster",
            )
        seen.setdefault(node.name, node.path)


def hosts_exist(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    names = [h.name for h in spec.hosts]
    for path, requested in _vm_paths(spec):
        if requested is not None and requested not in names:
            yield Finding(f"{path}.host", f"host {requested!r} is not defined", f"use one of: {', '.join(names)}")
    for path, vm in _vms(spec):
        if vm.image not in spec.images:
            yield Finding(
                f"{path}.image",
                f"unknown image {vm.image!r}: it is not defined in images",
                f"use one of: {', '.join(sorted(spec.images))}, or add it under images:",
            )


def addresses(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    mgmt, ic = spec.networks.management, spec.networks.interconnect
    m_net, i_net = mgmt.network, ic.network
    if m_net.overlaps(i_net):
        yield Finding(
            "networks.interconnect.cidr",
            f"{ic.cidr} overlaps the management network {mgmt.cidr}",
            "use two disjoint subnets",
        )
    gw = ipaddress.IPv4Address(mgmt.gateway_address)
    if gw not in m_net or gw in (m_net.network_address, m_net.broadcast_address):
        yield Finding(
            "networks.management.gateway",
            f"gateway {gw} is not a usable address of {mgmt.cidr}",
            f"pick an address between {m_net.network_address + 1} and {m_net.broadcast_address - 1}",
        )
    rng = mgmt.dhcp_range
    lo, hi = ipaddress.IPv4Address(rng.start), ipaddress.IPv4Address(rng.end)
    for key, addr in (("start", lo), ("end", hi)):
        if addr not in m_net or addr in (m_net.network_address, m_net.broadcast_address):
            yield Finding(
                f"networks.management.dhcp.{key}",
                f"{addr} is outside {mgmt.cidr}",
                "the DHCP range must lie inside the management subnet",
            )
    if lo > hi:
        yield Finding(
            "networks.management.dhcp", f"DHCP range starts at {lo} after it ends at {hi}", "swap start and end"
        )
    if lo <= gw <= hi:
        yield Finding(
            "networks.management.dhcp",
            f"the DHCP range {lo}-{hi} contains the gateway {gw}",
            "move the range or the gateway",
        )
    used: dict[str, str] = {}
    for node in nodes:
        for net, ip, label in ((m_net, node.mgmt_ip, "management"), (i_net, node.ic_ip, "interconnect")):
            addr = ipaddress.IPv4Address(ip)
            where = f"{node.path}.address_offset"
            if addr not in net or addr in (net.network_address, net.broadcast_address):
                yield Finding(
                    where,
                    f"{node.name}'s {label} address {ip} (offset {node.address_offset}) is outside {net}",
                    f"use offsets between 2 and {net.num_addresses - 2}",
                )
                continue
            if label == "management" and addr == gw:
                yield Finding(where, f"{node.name}'s address {ip} is the gateway", "move the node's address offset")
            if label == "interconnect" and node.address_offset == 1:
                yield Finding(
                    where,
                    f"{node.name}'s interconnect address {ip} is the host's own address",
                    "offset 1 belongs to the hypervisor; start at 2 or above",
                )
            if label == "management" and lo <= addr <= hi:
                yield Finding(
                    where,
                    f"{node.name}'s address {ip} lies inside the DHCP range {lo}-{hi}",
                    "move the node's address offset or the DHCP range",
                )
            if ip in used and used[ip] != node.name:
                yield Finding(
                    where,
                    f"{node.name} and {used[ip]} would both get {ip}",
                    "give the groups address offsets that do not overlap",
                )
            used.setdefault(ip, node.name)


def gpu_assignment(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    for hi, host in enumerate(spec.hosts):
        counts = Counter(g.address for g in host.gpus)
        for gi, gpu in enumerate(host.gpus):
            if counts[gpu.address] > 1:
                yield Finding(
                    f"hosts[{hi}].gpus[{gi}].address",
                    f"GPU {gpu.address} is listed twice on {host.name}",
                    "list each GPU once",
                )
            if gpu.model not in CATALOG:
                yield Finding(
                    f"hosts[{hi}].gpus[{gi}].model",
                    f"unknown GPU model {brief(gpu.model)}",
                    f"use one of: {', '.join(sorted(CATALOG))}",
                )
            numa_ids = {n.id for n in host.numa_nodes}
            if gpu.numa_node not in numa_ids:
                yield Finding(
                    f"hosts[{hi}].gpus[{gi}].numa_node",
                    f"NUMA node {gpu.numa_node} does not exist on {host.name}",
                    f"use one of: {', '.join(map(str, sorted(numa_ids)))}",
                )
    owner: dict[tuple[str, str], str] = {}
    gpu_map = assign_gpus(spec)
    for gi, group in enumerate(spec.compute):
        group_host = spec.host(group.host)
        if group_host is None:
            continue
        known = {g.address for g in group_host.gpus}
        for ai, address in enumerate(group.gpus):
            if address not in known:
                yield Finding(
                    f"compute[{gi}].gpus[{ai}]",
                    f"GPU {address} is not listed on host {group_host.name}",
                    f"add it to hosts[].gpus or use one of: {', '.join(sorted(known)) or 'none'}",
                )
        for ni in range(group.count):
            picked = gpu_map.get((gi, ni), ())
            if len(picked) < group.gpus_per_node and not group.gpus:
                yield Finding(
                    f"compute[{gi}].gpus_per_node",
                    f"host {group_host.name} has no free GPU left for node "
                    f"{ni + 1} of {group.name} ({len(picked)} of {group.gpus_per_node})",
                    "lower count or gpus_per_node, or add GPUs to the host",
                )
                break
            for address in picked:
                key = (group_host.name, address)
                node = f"{group.name} node {ni + 1}"
                if key in owner:
                    yield Finding(
                        f"compute[{gi}].gpus",
                        f"GPU {address} on {group_host.name} is assigned to both {owner[key]} and {node}",
                        "a GPU can be passed through to one VM only",
                    )
                owner.setdefault(key, node)


def capacity(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    by_host: dict[str, list[NodePlan]] = defaultdict(list)
    for node in nodes:
        by_host[node.host].append(node)
    for hi, host in enumerate(spec.hosts):
        placed = by_host.get(host.name, [])
        vcpus = sum(n.vcpus for n in placed)
        memory = sum(n.memory_mib for n in placed)
        if host.usable_cpus <= 0:
            yield Finding(
                f"hosts[{hi}].reserve.cpus",
                f"the reserve keeps all {host.cpu.logical_cpus} CPUs of {host.name} for the host",
                "reserve fewer CPUs",
            )
        if not host.pinning and any(n.gpus for n in placed):
            yield Finding(
                f"hosts[{hi}].pinning",
                f"GPU VMs on {host.name} need pinned vCPUs next to their GPUs",
                "set pinning: true (the default) on a host that passes GPUs through",
            )
        if vcpus > host.usable_cpus and not host.pinning:
            yield Finding(
                f"hosts[{hi}]",
                f"{vcpus} vCPUs float over {host.usable_cpus} usable CPUs of {host.name} (pinning is off)",
                "fine for a test rig; a real cluster wants pinning: true and no overcommit",
                Severity.WARNING,
            )
        elif vcpus > host.usable_cpus:
            yield Finding(
                f"hosts[{hi}]",
                f"{vcpus} vCPUs are placed on {host.name}, which has "
                f"{host.cpu.logical_cpus} CPUs minus {len(host.reserved_cpus)} reserved = {host.usable_cpus}",
                "move VMs to another host, shrink vcpus, or reserve fewer host CPUs",
            )
        if memory > host.usable_memory_mib:
            yield Finding(
                f"hosts[{hi}]",
                f"{memory} MiB of VM memory is placed on {host.name}, which has "
                f"{host.memory_mib} MiB minus a {host.reserve.memory_mib} MiB reserve = "
                f"{host.usable_memory_mib} MiB",
                "move VMs to another host or shrink memory_mib",
            )
        bad = [c for c in host.reserved_cpus if c >= host.cpu.logical_cpus]
        if bad:
            yield Finding(
                f"hosts[{hi}].reserve.cpus",
                f"CPUs {bad} do not exist on {host.name} (0-{host.cpu.logical_cpus - 1})",
                "list only existing CPUs",
            )
        numa_cpus = [c for n in host.numa_nodes for c in n.cpu_list]
        if len(numa_cpus) != len(set(numa_cpus)) or set(numa_cpus) != set(host.cpu_list):
            yield Finding(
                f"hosts[{hi}].numa_nodes",
                f"NUMA nodes must list every host CPU exactly once (0-{host.cpu.logical_cpus - 1})",
                "paste the output of `python -m hyperscaler inventory`",
            )


def services(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    groups = {g.name for g in spec.compute}
    defaults = [i for i, p in enumerate(spec.slurm.partitions) if p.default]
    if len(defaults) > 1:
        yield Finding(
            f"slurm.partitions[{defaults[1]}].default",
            "more than one partition is the default",
            "mark exactly one partition default: true",
        )
    names = Counter(p.name for p in spec.slurm.partitions)
    for pi, part in enumerate(spec.slurm.partitions):
        if names[part.name] > 1:
            yield Finding(
                f"slurm.partitions[{pi}].name",
                f"partition {part.name!r} is defined twice",
                "give every partition its own name",
            )
        for gi, group in enumerate(part.groups):
            if group not in groups:
                yield Finding(
                    f"slurm.partitions[{pi}].groups[{gi}]",
                    f"compute group {group!r} does not exist",
                    f"use one of: {', '.join(sorted(groups)) or 'none (add compute groups)'}",
                )
    if not any(n.role is Role.COMPUTE for n in nodes):
        yield Finding(
            "compute",
            "the cluster has no compute nodes: SLURM refuses a cluster without nodes",
            "add a compute group with count >= 1, e.g. compute: [{name: cpu, count: 2, vcpus: 2, memory_mib: 4096}]",
        )


def slurm_options(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """Only keys slurm.conf(5) knows, never a key hyperscaler derives, and values SLURM will parse."""
    yield from _options(
        "slurm.options", spec.slurm.options, OPTION_RULES, OPTION_NAMES, OWNED_KEYS,
        "it is set by hyperscaler from the rest of the stack file; change the matching section "
        "(nodes, partitions, accounting)",
    )  # fmt: skip
    for pi, part in enumerate(spec.slurm.partitions):
        yield from _options(
            f"slurm.partitions[{pi}].options", part.options, PARTITION_OPTION_RULES, PARTITION_OPTION_NAMES,
            OWNED_PARTITION_KEYS, "it comes from the partition's name, groups, default and max_time fields",
        )  # fmt: skip
    yield from _same_key_twice("slurm.options", spec.slurm.options)
    for pi, part in enumerate(spec.slurm.partitions):
        yield from _same_key_twice(f"slurm.partitions[{pi}].options", part.options)
    yield from _option_combinations(spec.slurm.options)


def _same_key_twice(where: str, options: dict[str, str]) -> Iterator[Finding]:
    """slurm.conf keys ignore case: two spellings would be one key written twice ("specified more than once")."""
    seen: dict[str, str] = {}
    for key in options:
        if key.lower() in seen:
            yield Finding(
                f"{where}.{key}", f"{key} is also given as {seen[key.lower()]}", "slurm.conf keys ignore case"
            )
        seen.setdefault(key.lower(), key)


def _option_combinations(options: dict[str, str]) -> Iterator[Finding]:
    """Keys whose values slurmctld checks against each other; each value alone already passed its Rule."""
    values = {k.lower(): (k, v) for k, v in options.items()}

    def value(key: str, default: str) -> str:
        return values.get(key.lower(), (key, default))[1]

    def path(*keys: str) -> str:
        given = [values[k.lower()][0] for k in keys if k.lower() in values]
        return "slurm.options." + (given[0] if given else keys[0])

    preempt_type = value("PreemptType", "preempt/none")
    modes = {w.upper() for w in value("PreemptMode", "OFF").split(",")} - {"GANG"} or {"OFF"}
    if OPTION_RULES["preempttype"].accepts(preempt_type) and OPTION_RULES["preemptmode"].accepts(
        value("PreemptMode", "OFF")
    ):
        # slurmctld: "PreemptType and PreemptMode values incompatible"
        if preempt_type == "preempt/none" and modes != {"OFF"}:
            yield Finding(
                path("PreemptMode"),
                f"PreemptMode {value('PreemptMode', 'OFF')} needs a PreemptType; with preempt/none it must be OFF",
                "set PreemptType: preempt/qos or preempt/partition_prio, or PreemptMode: OFF",
            )
        elif preempt_type != "preempt/none" and modes == {"OFF"}:
            yield Finding(
                path("PreemptMode", "PreemptType"),
                f"PreemptType {preempt_type} needs PreemptMode CANCEL, REQUEUE or SUSPEND,GANG",
                "set PreemptMode, or PreemptType: preempt/none",
            )
    first, last = value("FirstJobId", "1"), value("MaxJobId", str(MAX_JOB_ID))
    if first.isdigit() and last.isdigit() and int(first) > int(last):
        # slurmctld: "FirstJobId > MaxJobId"
        yield Finding(path("FirstJobId"), f"FirstJobId {first} is above MaxJobId {last}", "lower FirstJobId")
    flags = {w.lower() for w in value("PrologFlags", "").split(",")}
    if value("JobContainerType", "").lower() == "job_container/tmpfs" and not flags & {"contain", "x11"}:
        # slurmctld: "fatal: PrologFlags=Contain is required for use with job_container/tmpfs" (X11 implies it)
        yield Finding(
            path("JobContainerType"),
            "job_container/tmpfs needs PrologFlags to include Contain",
            "add Contain to PrologFlags",
        )


def _options(
    where: str,
    options: dict[str, str],
    rules: dict[str, Rule],
    names: dict[str, str],
    owned: frozenset[str],
    owned_hint: str,
) -> Iterator[Finding]:
    for key, value in options.items():
        path = f"{where}.{key}"
        lowered = key.lower()
        if lowered in owned:
            yield Finding(path, f"{key} cannot be set here", owned_hint)
        elif lowered not in rules:
            close = [names[k] for k in rules if k.startswith(lowered[:4])][:5]
            yield Finding(
                path,
                f"{key} is not a key hyperscaler can check for SLURM 22.05 here",
                f"keys that work here: {', '.join(close) if close else ', '.join(sorted(names.values())[:8]) + '...'}"
                " (docs/slurm.md lists them)",
            )
        elif not rules[lowered].accepts(value):
            yield Finding(path, f"{brief(value)} is not a valid {names[lowered]}", f"use {rules[lowered].describe}")


def memory_for_slurm(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """RealMemory = VM memory - headroom must leave SLURM something to schedule."""
    headroom = spec.slurm.os_headroom_mib
    for i, group in enumerate(spec.compute):
        if group.memory_mib - headroom < MIN_REAL_MEMORY_MIB:
            yield Finding(
                "slurm.os_headroom_mib",
                f"{group.name} nodes have {group.memory_mib} MiB; after the {headroom} MiB left to the OS, SLURM "
                f"would get {group.memory_mib - headroom} MiB (compute[{i}])",
                f"give {group.name} nodes at least {headroom + MIN_REAL_MEMORY_MIB} MiB, or lower os_headroom_mib",
            )


def root_disks(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    for path, vm in _vms(spec):
        image = spec.images.get(vm.image)
        size = image_virtual_size_gib(image) if image is not None else None
        if size is not None and vm.disk_gib < size:
            yield Finding(
                f"{path}.disk_gib",
                f"the root disk ({vm.disk_gib} GiB) is smaller than its image {vm.image!r} ({size} GiB)",
                f"set disk_gib to {size} or more; a copy-on-write disk cannot be smaller than its base",
            )


def image_sources(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """Every image is pinned by its sha256, unless it is a local file its admin marks as trusted: the same
    URL or object can serve other bytes tomorrow, and two `pulumi up` runs would build different clusters."""
    for name, image in sorted(spec.images.items()):
        path = f"images.{name}"
        if image.trusted and not image.is_local:
            yield Finding(
                f"{path}.trusted",
                f"only a local file can be trusted; {brief(image.source)} is fetched from elsewhere",
                "remove trusted and pin the image with sha256: <64 hex digits>",
            )
        elif image.sha256 is None and not image.trusted:
            kind = "a local file" if image.is_local else "a download"
            yield Finding(
                f"{path}.sha256",
                f"image {name!r} ({kind}, {brief(image.source)}) has no sha256, so nothing would notice if it changed",
                "add sha256: <64 hex digits> (sha256sum FILE, or python -m hyperscaler image sha256 SOURCE); for a "
                "local file you vouch for, trusted: true",
            )
        elif image.sha256 is not None and image.trusted:
            yield Finding(
                f"{path}.trusted",
                f"image {name!r} is both trusted and pinned by sha256; the checksum is checked all the same",
                "remove one of them",
                Severity.WARNING,
            )
        if image.s3 is not None and not image.source.startswith("s3://"):
            yield Finding(
                f"{path}.s3",
                f"s3 settings given for {brief(image.source)}, which is not an s3:// source",
                "remove s3:, or use a source of the form s3://bucket/key",
            )


def networks(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    mgmt, ic = spec.networks.management, spec.networks.interconnect
    if mgmt.name == ic.name:
        yield Finding(
            "networks.interconnect.name",
            f"both networks are named {ic.name!r}; libvirt would define one over the other",
            "give the interconnect its own name, e.g. hpc-ic",
        )
    if mgmt.mode == "bridge" and ic.mode == "bridge" and mgmt.bridge == ic.bridge:
        yield Finding(
            "networks.interconnect.bridge",
            f"both networks join the host bridge {ic.bridge!r}",
            "use a separate bridge for the interconnect",
        )
    used = sorted({n.host for n in nodes})
    if len(used) > 1:
        for net, label, local in ((mgmt, "management", "nat/route"), (ic, "interconnect", "isolated")):
            if net.mode != "bridge":
                yield Finding(
                    f"networks.{label}.mode",
                    f"the {label} network is {net.mode!r} and VMs run on {len(used)} hosts ({', '.join(used)}): each "
                    f"host would get its own disconnected copy of a {local} network, and nodes on different hosts "
                    "could not reach each other",
                    f"use mode: bridge with a host bridge that joins the hosts' L2 segment (bridge: br-{label[:4]})",
                )


def host_definitions(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    multi = len(spec.hosts) > 1
    uris = Counter(h.uri for h in spec.hosts)
    for hi, host in enumerate(spec.hosts):
        if multi and "uri" not in host.model_fields_set:
            yield Finding(
                f"hosts[{hi}].uri",
                f"host {host.name} has no uri; with {len(spec.hosts)} hosts each needs its own",
                f"e.g. uri: qemu+ssh://root@{host.name}/system (or qemu:///system for the machine running pulumi)",
            )
        elif uris[host.uri] > 1:
            yield Finding(
                f"hosts[{hi}].uri",
                f"{host.uri} is the URI of {uris[host.uri]} hosts; they would all be the same machine",
                "give each host the URI that reaches it",
            )
        ids = Counter(n.id for n in host.numa_nodes)
        twice = sorted(i for i, n in ids.items() if n > 1)
        if twice:
            yield Finding(
                f"hosts[{hi}].numa_nodes",
                f"NUMA node id {', '.join(map(str, twice))} is listed more than once on {host.name}",
                "list each node of /sys/devices/system/node once (`python -m hyperscaler inventory` does)",
            )
        numa_memory = sum(n.memory_mib for n in host.numa_nodes)
        if numa_memory > host.memory_mib:
            yield Finding(
                f"hosts[{hi}].numa_nodes",
                f"the NUMA nodes of {host.name} hold {numa_memory} MiB, more than its memory_mib ({host.memory_mib})",
                "make memory_mib the sum of the nodes' memory, or fix the nodes (`hyperscaler inventory`)",
            )
        if spec.needs_jump_host(host) and host.ssh_host_key is None and any(n.host == host.name for n in nodes):
            address = str(host.ssh_login).split("@")[-1]
            yield Finding(
                f"hosts[{hi}].ssh_host_key",
                f"nodes on {host.name} are reached through {host.ssh_login} over SSH, and its host key is unknown: "
                "hyperscaler refuses to send keys and secrets through a host it cannot verify",
                f"add ssh_host_key: the output of `ssh-keyscan -t ed25519 {address}` without "
                "the host name (verify it on the host with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`)",
            )


def shared_storage(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """What NFS and BeeGFS require of the storage nodes, with the field to change."""
    storage = spec.storage
    if storage is None or storage.count == 0:
        return
    if storage.backend == "nfs":
        if storage.count > 1:
            yield Finding(
                "storage.count",
                f"nfs is served by one storage node, and {storage.count} are defined",
                "use backend: beegfs to spread files over several nodes, or count: 1",
            )
        if len(storage.data_disks_gib) > 1:
            yield Finding(
                "storage.data_disks_gib",
                f"nfs exports the first data volume; the other {len(storage.data_disks_gib) - 1} would hold nothing",
                "give one data volume, or use backend: beegfs, which makes each a storage target",
            )
        return
    beegfs = storage.beegfs
    if mgmtd_node(spec, nodes) is None:
        names = ", ".join(["controller", *(n.name for n in storage_nodes(nodes))])
        yield Finding(
            "storage.beegfs.mgmtd",
            f"no node {beegfs.mgmtd!r} can run the management service",
            f"use one of: {names}",
        )
    if storage.count * 100 + TARGETS_PER_NODE > 65535:
        yield Finding(
            "storage.count",
            f"{storage.count} storage nodes would give target ids past 65535 (BeeGFS ids are 16-bit)",
            "use at most 654 storage nodes",
        )
    minimum = MIN_TARGET_GIB[beegfs.version]
    for i, size in enumerate(storage.data_disks_gib):
        if size < minimum:
            yield Finding(
                f"storage.data_disks_gib[{i}]",
                f"a {size} GiB storage target is below BeeGFS {beegfs.version}'s {minimum} GiB minimum: BeeGFS "
                "would treat it as nearly full from the start",
                f"give each data volume {minimum} GiB or more (docs/storage.md says why)",
            )
    targets = storage_targets(nodes)
    if beegfs.mirror_storage and len(targets) % 2:
        yield Finding(
            "storage.beegfs.mirror_storage",
            f"buddy mirror groups pair storage targets, and there are {len(targets)}: one would have no partner",
            "give an even number of data volumes over the storage nodes, or mirror_storage: false",
        )
    if beegfs.mirror_metadata and (storage.count < 2 or storage.count % 2):
        yield Finding(
            "storage.beegfs.mirror_metadata",
            f"metadata mirror groups pair the storage nodes' meta services, and there are {storage.count}",
            "use an even number of storage nodes (2 or more), or mirror_metadata: false",
        )
    known = {t.reference: t for t in targets}
    owner: dict[str, str] = {}
    pools = Counter(p.name for p in beegfs.pools)
    for pi, pool in enumerate(beegfs.pools):
        if pools[pool.name] > 1:
            yield Finding(f"storage.beegfs.pools[{pi}].name", f"pool {pool.name!r} is defined twice", "rename one")
        if pool.name == "default":
            yield Finding(
                f"storage.beegfs.pools[{pi}].name",
                "'default' is BeeGFS's own pool, holding every target no other pool has",
                "name the pool after what it is for, e.g. fast",
            )
        for ti, ref in enumerate(pool.targets):
            where = f"storage.beegfs.pools[{pi}].targets[{ti}]"
            if ref not in known:
                yield Finding(
                    where,
                    f"pool {pool.name!r} names {brief(ref)}, which is not a storage target",
                    f"use <storage node>:<data volume number>, one of: {', '.join(sorted(known))}",
                )
            elif ref in owner:
                yield Finding(where, f"{ref} is already in pool {owner[ref]!r}", "a target belongs to one pool")
            owner.setdefault(ref, pool.name)
    for di, directory in enumerate(beegfs.directories):
        where = f"storage.beegfs.directories[{di}]"
        parts = directory.path.split("/")
        if directory.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            yield Finding(
                f"{where}.path",
                f"{brief(directory.path)} is not a directory below the mount point",
                "give a relative path such as scratch or projects/ml, without '..'",
            )
        if directory.pool is not None and directory.pool not in pools:
            yield Finding(
                f"{where}.pool",
                f"pool {directory.pool!r} is not defined",
                f"use one of: {', '.join(sorted(pools)) or 'none (add storage.beegfs.pools)'}",
            )
        if directory.mirrored and not beegfs.mirror_storage:
            hint = "set storage.beegfs.mirror_storage: true"
            yield Finding(f"{where}.mirrored", "mirrored files need buddy mirror groups", hint)


CHECKS: tuple[Check, ...] = (
    unique_names,
    hosts_exist,
    image_sources,
    host_definitions,
    networks,
    addresses,
    gpu_assignment,
    capacity,
    root_disks,
    services,
    shared_storage,
    slurm_options,
    memory_for_slurm,
    *GPU_CHECKS,
    *MIG_CHECKS,
    *MONITORING_CHECKS,
    *CONTAINER_CHECKS,
)


def run_checks(spec: ClusterSpec, extra: Iterable[Check] = ()) -> list[Finding]:
    nodes = plan_nodes(spec)
    findings: list[Finding] = []
    for check in (*CHECKS, *extra):
        findings.extend(check(spec, nodes))
    return sorted(set(findings), key=lambda f: (f.severity is not Severity.ERROR, f.path, f.message))
