"""slurm.conf, gres.conf, cgroup.conf and slurmdbd.conf, rendered from the spec.

Node lines derive from each VM's size and topology, so SLURM is told exactly what the guest has.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import hostlist

from config.catalog import CATALOG
from config.mig import NodeMig, node_mig
from config.models import ClusterSpec, Partition
from config.slurm_facts import OPTION_NAMES, OWNED_KEYS, PARTITION_OPTION_NAMES, RESTART_KEYS
from config.topology import NodePlan, Role
from render.common import key_values
from render.volumes import STATE_MOUNT

HEADER = "# Managed by hyperscaler. Edit the stack file, not this file: `pulumi up` overwrites it.\n"
STATE_SAVE = f"{STATE_MOUNT}/slurmctld"
SLURM_ETC = "/etc/slurm"
SLURMCTLD_PORT = 6817
SLURMD_PORT = 6818
SLURMDBD_PORT = 6819
MIN_REAL_MEMORY_MIB = 256
CONFIGLESS = "enable_configless"
# The GRES a MIG node derives from its devices at every slurmd start (render/scripts/mig-gres.sh). Configless
# slurmd reads only the gres.conf slurmctld sends, but an `Include` in it is read from the node's own disk:
# the controller's copy is a comment (slurmctld parses gres.conf too), each node's lists its MIG devices.
GRES_NODE_FILE = f"{SLURM_ETC}/gres.d/node.conf"


@dataclass(frozen=True)
class NodeClass:
    """Nodes SLURM can describe with one NodeName line: same group, same hardware."""

    names: tuple[str, ...]
    addresses: tuple[str, ...]
    cpus: int
    sockets: int
    cores: int
    threads: int
    real_memory: int
    gres: str | None
    features: tuple[str, ...]
    mig: NodeMig | None = None  # MIG-managed: the node writes its own GRES lines (or whole GPUs, MIG off)

    @property
    def hostlist(self) -> str:
        return str(hostlist.collect_hostlist(list(self.names)))


def real_memory(spec: ClusterSpec, node: NodePlan) -> int:
    return max(MIN_REAL_MEMORY_MIB, node.memory_mib - spec.slurm.os_headroom_mib)


def gpu_gres(spec: ClusterSpec, node: NodePlan) -> str | None:
    """ "gpu:<type>:<n>" per GPU type on the node, e.g. gpu:h100:2, or per MIG profile when its GPUs are
    partitioned, largest first: gpu:3g.40gb:1,gpu:2g.20gb:1,gpu:1g.10gb:2."""
    mig = node_mig(spec, node)
    if mig is not None and mig.enabled:
        return ",".join(f"gpu:{name}:{count}" for name, count in mig.totals())
    counts: dict[str, int] = {}
    for gpu in node.gpus:
        model = CATALOG.get(gpu.model)
        gtype = model.slurm_type if model else gpu.model.replace("-", "_")
        counts[gtype] = counts.get(gtype, 0) + 1
    return ",".join(f"gpu:{t}:{n}" for t, n in sorted(counts.items())) or None


def gres_types(spec: ClusterSpec, node: NodePlan) -> list[str]:
    """The GRES types a job can ask for on the node: GPU models, or MIG profiles."""
    gres = gpu_gres(spec, node)
    return sorted({entry.split(":")[1] for entry in gres.split(",")}) if gres else []


def gpu_types(node: NodePlan) -> list[str]:
    return sorted({(CATALOG[g.model].slurm_type if g.model in CATALOG else g.model) for g in node.gpus})


def compute_nodes(nodes: list[NodePlan]) -> list[NodePlan]:
    return [n for n in nodes if n.role is Role.COMPUTE]


def node_classes(spec: ClusterSpec, nodes: list[NodePlan]) -> list[NodeClass]:
    classes: list[NodeClass] = []

    def signature(n: NodePlan) -> tuple[object, ...]:
        return (n.group, n.vcpus, n.topology, real_memory(spec, n), gpu_gres(spec, n), n.features)

    ordered = sorted(compute_nodes(nodes), key=lambda n: (n.group, n.index))
    for _, members_iter in itertools.groupby(ordered, key=signature):
        members = list(members_iter)
        first = members[0]
        features = (first.group, *gpu_types(first), *first.features)
        classes.append(
            NodeClass(
                names=tuple(m.name for m in members),
                addresses=tuple(m.mgmt_ip for m in members),
                cpus=first.vcpus,
                sockets=first.topology.sockets,
                cores=first.topology.cores,
                threads=first.topology.threads,
                real_memory=real_memory(spec, first),
                gres=gpu_gres(spec, first),
                features=tuple(dict.fromkeys(features)),
                mig=node_mig(spec, first),
            )
        )
    return classes


def partitions(spec: ClusterSpec, nodes: list[NodePlan]) -> list[Partition]:
    """The configured partitions, or `cpu` (default) plus `gpu` when GPU nodes exist."""
    if spec.slurm.partitions:
        return list(spec.slurm.partitions)
    computes = compute_nodes(nodes)
    gpu_groups = sorted({n.group for n in computes if n.gpus})
    cpu_groups = sorted({n.group for n in computes if not n.gpus}) or gpu_groups
    result = [Partition(name="cpu", groups=cpu_groups, default=True)]
    if gpu_groups:
        result.append(Partition(name="gpu", groups=gpu_groups))
    return result


def _partition_line(part: Partition, nodes: list[NodePlan], any_default: bool) -> str:
    members = [n.name for n in compute_nodes(nodes) if not part.groups or n.group in part.groups]
    pairs: list[tuple[str, object]] = [
        ("PartitionName", part.name),
        ("Nodes", hostlist.collect_hostlist(members) if members else ""),
        ("Default", part.default or (not any_default and part.name == "cpu")),
        ("MaxTime", part.max_time),
        ("State", "UP"),
    ]
    # Spelled as slurm.conf(5) spells them, so a key set twice in different case cannot appear twice.
    pairs += sorted((PARTITION_OPTION_NAMES.get(k.lower(), k), v) for k, v in part.options.items())
    return key_values(pairs, joiner=" ")


def controller(nodes: list[NodePlan]) -> NodePlan:
    return next(n for n in nodes if n.role is Role.CONTROLLER)


def global_options(spec: ClusterSpec, nodes: list[NodePlan]) -> dict[str, object]:
    ctl = controller(nodes)
    accounting = spec.slurm.accounting.enabled
    has_gpus = any(n.gpus for n in nodes)
    owned: dict[str, object] = {
        "ClusterName": spec.name,
        "SlurmctldHost": f"{ctl.name}({ctl.mgmt_ip})",
        "SlurmUser": "slurm",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "StateSaveLocation": STATE_SAVE,
        "SlurmdSpoolDir": "/var/spool/slurmd",
        "SlurmctldPidFile": "/run/slurmctld.pid",
        "SlurmdPidFile": "/run/slurmd.pid",
        "SlurmctldLogFile": "/var/log/slurm/slurmctld.log",
        "SlurmdLogFile": "/var/log/slurm/slurmd.log",
        "SlurmctldPort": SLURMCTLD_PORT,
        "SlurmdPort": SLURMD_PORT,
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core_Memory",
        "ProctrackType": "proctrack/cgroup",
        "TaskPlugin": "task/cgroup,task/affinity",
        "GresTypes": "gpu",
        "JobAcctGatherType": "jobacct_gather/cgroup",
        "AccountingStorageType": "accounting_storage/slurmdbd" if accounting else "accounting_storage/none",
        "AccountingStorageHost": ctl.name if accounting else None,
        "AccountingStoragePort": SLURMDBD_PORT if accounting else None,
        "AccountingStorageTRES": "gres/gpu" if accounting and has_gpus else None,
    }
    assert {k.lower() for k in owned} <= OWNED_KEYS, "every key we set must be refused in slurm.options"
    defaults: dict[str, object] = {
        "MpiDefault": "none",
        "ReturnToService": 2,
        "MailProg": "/bin/true",
        "SchedulerType": "sched/backfill",
        "SlurmctldTimeout": 120,
        "SlurmdTimeout": 300,
        "InactiveLimit": 0,
        "MinJobAge": 300,
        "KillWait": 30,
        "WaitTime": 0,
        "JobCompType": "jobcomp/none",
        "SlurmctldDebug": "info",
        "SlurmdDebug": "info",
        "DefMemPerCPU": None,
    }
    # One spelling per key (slurm.conf(5)'s), so `killwait` in options replaces the default KillWait
    # instead of adding a second, conflicting line.
    user = {OPTION_NAMES.get(k.lower(), k): v for k, v in spec.slurm.options.items()}
    assert all(OPTION_NAMES.get(k.lower(), k) == k for k in defaults), "defaults use slurm.conf(5) spelling"
    # Configless: slurmd fetches slurm.conf, gres.conf and cgroup.conf from slurmctld, so only the
    # controller holds the files and a change reaches every node without touching it (docs/slurm.md).
    extra = [p for p in str(user.pop("SlurmctldParameters", "")).split(",") if p and p != CONFIGLESS]
    user["SlurmctldParameters"] = ",".join([CONFIGLESS, *extra])
    merged = {**defaults, **user, **owned}
    return {k: merged[k] for k in sorted(merged, key=str.lower) if merged[k] is not None}


def _hardware(cls: NodeClass) -> list[tuple[str, object]]:
    """What SLURM is told about each node of a class, apart from its name and address."""
    return [
        ("CPUs", cls.cpus),
        ("Boards", 1),
        ("SocketsPerBoard", cls.sockets),
        ("CoresPerSocket", cls.cores),
        ("ThreadsPerCore", cls.threads),
        ("RealMemory", cls.real_memory),
        ("Gres", cls.gres),
        ("Features", ",".join(cls.features)),
    ]


def _gres_devices(cls: NodeClass) -> list[list[tuple[str, object]]]:
    """One gres.conf entry (without NodeName) per GPU type of a class, with its device files. None for
    partitioned GPUs: their nodes list their MIG devices themselves (GRES_NODE_FILE)."""
    entries: list[list[tuple[str, object]]] = []
    if cls.mig is not None and cls.mig.enabled:
        return entries
    index = 0
    for entry in (cls.gres or "").split(",") if cls.gres else []:
        _, gtype, count = entry.split(":")
        n = int(count)
        files = f"/dev/nvidia{index}" if n == 1 else f"/dev/nvidia[{index}-{index + n - 1}]"
        entries.append([("Name", "gpu"), ("Type", gtype), ("File", files)])
        index += n
    return entries


def node_definitions(spec: ClusterSpec, nodes: list[NodePlan]) -> dict[str, str]:
    """{compute node: its own hardware and GRES as SLURM sees them}: what restarting its slurmd puts into
    effect. It does not name the other nodes, so adding a node leaves every other node's definition alone.
    On a MIG-managed node the GRES are its mig step's to put into effect (it drains, applies, restarts
    slurmd), so they are left out here: a layout change restarts slurmd once, at the right moment."""
    out = {}
    for cls in node_classes(spec, nodes):
        hardware = [(k, v) for k, v in _hardware(cls) if not (cls.mig is not None and k == "Gres")]
        text = key_values(hardware, joiner=" ")
        if cls.mig is None:
            text += "".join("\n" + key_values(e, joiner=" ") for e in _gres_devices(cls))
        out.update(dict.fromkeys(cls.names, text))
    return out


def uses_node_gres(spec: ClusterSpec, nodes: list[NodePlan]) -> bool:
    """Whether some node derives its GRES itself, so gres.conf includes GRES_NODE_FILE."""
    return any(cls.mig is not None and cls.mig.enabled for cls in node_classes(spec, nodes))


def mig_gres(spec: ClusterSpec, nodes: list[NodePlan]) -> str:
    """ "hostlist=GRES" words for the MIG-managed classes: slurmctld.sh drains a node whose GRES changes."""
    return " ".join(f"{cls.hostlist}={cls.gres}" for cls in node_classes(spec, nodes) if cls.mig and cls.gres)


def render_slurm_conf(spec: ClusterSpec, nodes: list[NodePlan]) -> str:
    lines = [HEADER, key_values(global_options(spec, nodes)), "", "# Nodes: one line per compute group"]
    for cls in node_classes(spec, nodes):
        pairs = [("NodeName", cls.hostlist), ("NodeAddr", ",".join(cls.addresses)), *_hardware(cls)]
        lines.append(key_values([*pairs, ("State", "UNKNOWN")], joiner=" "))
    lines += ["", "# Partitions"]
    parts = partitions(spec, nodes)
    any_default = any(p.default for p in parts)
    lines += [_partition_line(p, nodes, any_default) for p in parts]
    return "\n".join(lines) + "\n"


def restart_key_lines(conf: str, with_nodes: bool = True) -> list[str]:
    """The lines of slurm.conf whose change needs slurmctld/slurmd restarted, not just reconfigured:
    the restart-class keys, and the node definitions unless `with_nodes` is False."""
    out = []
    for line in conf.splitlines():
        key = line.split("=", 1)[0].strip().lower()
        if (with_nodes and key == "nodename") or key in RESTART_KEYS:
            out.append(line)
    return out


def render_gres_conf(spec: ClusterSpec, nodes: list[NodePlan]) -> str:
    """Typed GPUs with their device files. A passed-through GPU is /dev/nvidiaN inside the VM, numbered
    from 0 in PCI order. Count-only lines are not used: slurmd drops file-less GPUs and the node goes INVAL."""
    lines = [HEADER.rstrip("\n")]
    for cls in node_classes(spec, nodes):
        lines += [key_values([("NodeName", cls.hostlist), *entry], joiner=" ") for entry in _gres_devices(cls)]
    if uses_node_gres(spec, nodes):
        lines += [
            "# MIG devices: each node lists its own, derived from its GPUs at every slurmd start",
            f"Include {GRES_NODE_FILE}",
        ]
    return "\n".join(lines) + "\n"


def render_controller_gres_node_file() -> str:
    """The controller's GRES_NODE_FILE: slurmctld parses gres.conf and its Include too, and has no GPUs."""
    return HEADER + "# The controller has no GPUs; compute nodes write their own copy (mig-gres.sh).\n"


def render_cgroup_conf(plugin: str = "cgroup/v2") -> str:
    # Debian 12 guests boot the unified hierarchy (cgroup/v2). CgroupAutomount is defunct: never emit it.
    pairs = [
        ("CgroupPlugin", plugin),
        ("ConstrainCores", True),
        ("ConstrainDevices", True),
        ("ConstrainRAMSpace", True),
        ("ConstrainSwapSpace", True),
    ]
    return HEADER + key_values(pairs) + "\n"


def render_slurmdbd_conf(spec: ClusterSpec, nodes: list[NodePlan], db_password: str) -> str:
    """Call inside Output.apply: the password exists only at deploy time, and the result stays secret."""
    ctl = controller(nodes)
    pairs = [
        ("AuthType", "auth/munge"),
        ("DbdHost", ctl.name),
        ("DbdPort", SLURMDBD_PORT),
        ("SlurmUser", "slurm"),
        ("LogFile", "/var/log/slurm/slurmdbd.log"),
        ("PidFile", "/run/slurmdbd.pid"),
        ("StorageType", "accounting_storage/mysql"),
        ("StorageHost", "localhost"),
        ("StorageUser", "slurm"),
        ("StoragePass", db_password),
        ("StorageLoc", spec.slurm.accounting.database),
    ]
    return HEADER + key_values(pairs) + "\n"
