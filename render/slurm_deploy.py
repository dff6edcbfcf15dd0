"""What each node needs for SLURM: files, scripts and the ordered steps that apply them. Pure.

components/slurm.py turns this into remote.Commands; the offline plan and the real-SLURM proof read the
same steps, so the order tested is the order deployed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hostlist

from config.mig import node_mig
from config.models import ClusterSpec
from config.monitoring_facts import TEXTFILE_DIR
from config.topology import NodePlan
from render.common import RenderedFile, content_hash, in_dependency_order
from render.containers import plugstack_file
from render.mig import GRES_SCRIPT, mig_files, mig_step_script
from render.remote import SLURM_INCLUDES, render_script
from render.slurm import (
    GRES_NODE_FILE,
    SLURM_ETC,
    SLURMCTLD_PORT,
    STATE_MOUNT,
    STATE_SAVE,
    compute_nodes,
    controller,
    gres_types,
    mig_gres,
    node_definitions,
    partitions,
    render_cgroup_conf,
    render_controller_gres_node_file,
    render_gres_conf,
    render_slurm_conf,
    restart_key_lines,
    uses_node_gres,
)

MUNGE_KEY = "/etc/munge/munge.key"
SLURMDBD_CONF = f"{SLURM_ETC}/slurmdbd.conf"
MARIADB_CNF = "/etc/mysql/mariadb.conf.d/60-hyperscaler.cnf"
MYSQL_DATADIR = f"{STATE_MOUNT}/mysql"
MUNGE_KEY_BYTES = 128  # what `mungekey` generates by default (1024 bits)
CANARY_TIMEOUT_S = 300


@dataclass(frozen=True)
class Step:
    """One remote command: run `script` on `node` once its files and the steps in `after` exist.
    It re-runs when the script (parameters included) or any file in `applies` changes."""

    node: str
    name: str
    script: RenderedFile
    applies: tuple[str, ...] = ()  # files this step puts into effect: a change to one re-runs the step
    needs: tuple[str, ...] = ()  # files that must exist first but whose change the step does not act on
    after: tuple[str, ...] = ()  # names of earlier steps (on this node unless "node:step")
    args: tuple[str, ...] = ()
    delete_args: tuple[str, ...] | None = None  # run the script again with these when the step is deleted
    instance_of: str | None = None  # another node whose VM this step is about: its replacement re-runs it

    @property
    def key(self) -> str:
        return f"{self.node}:{self.name}"

    @property
    def requires(self) -> tuple[str, ...]:
        return tuple(a if ":" in a else f"{self.node}:{a}" for a in self.after)


@dataclass(frozen=True)
class NodeSlurm:
    node: NodePlan
    # Non-secret files, pushed on their own; secret ones (munge key, slurmdbd.conf) come at deploy time.
    # Step scripts travel with their step, except those a step runs again when it is deleted.
    files: tuple[RenderedFile, ...]
    secret_paths: tuple[str, ...]
    steps: tuple[Step, ...] = field(default=())


def config_files(spec: ClusterSpec, nodes: list[NodePlan]) -> dict[str, RenderedFile]:
    """The controller's SLURM files; configless slurmd fetches them all, plugstack.conf (Pyxis) included."""
    files = [
        RenderedFile(f"{SLURM_ETC}/slurm.conf", render_slurm_conf(spec, nodes)),
        RenderedFile(f"{SLURM_ETC}/gres.conf", render_gres_conf(spec, nodes)),
        RenderedFile(f"{SLURM_ETC}/cgroup.conf", render_cgroup_conf(spec.slurm.cgroup_plugin)),
    ]
    plugstack = plugstack_file(spec)
    if plugstack is not None:
        files.append(plugstack)
    return {f.path: f for f in files}


def mariadb_cnf(ctl: NodePlan) -> RenderedFile:
    pool = max(128, min(1024, ctl.memory_mib // 8))  # SchedMD suggests 1 GiB; smaller controllers get less
    text = (
        "# Managed by hyperscaler: the accounting DB lives on the protected state volume.\n"
        "[mysqld]\n"
        f"datadir = {MYSQL_DATADIR}\n"
        "bind-address = 127.0.0.1\n"
        "pid-file = /run/mysqld/mysqld.pid\n"
        "socket = /run/mysqld/mysqld.sock\n"
        f"innodb_buffer_pool_size = {pool}M\n"
        "innodb_log_file_size = 64M\n"
        "innodb_lock_wait_timeout = 900\n"
    )
    return RenderedFile(MARIADB_CNF, text)


def canary_metrics(spec: ClusterSpec) -> str:
    """Where the canary records its outcome for node-exporter (alert CanaryFailed); nowhere without monitoring."""
    return f"{TEXTFILE_DIR}/hyperscaler-canary.prom" if spec.monitoring.enabled else ""


def restart_key(*texts: str) -> str:
    return content_hash(*texts)


def slurm_plan(spec: ClusterSpec, nodes: list[NodePlan]) -> list[NodeSlurm]:
    """Controller first, then compute nodes. Storage nodes run no SLURM daemon."""
    confs = config_files(spec, nodes)
    slurm_conf = confs[f"{SLURM_ETC}/slurm.conf"].content
    cgroup_conf = confs[f"{SLURM_ETC}/cgroup.conf"].content
    ctl = controller(nodes)
    computes = compute_nodes(nodes)
    compute_list = str(hostlist.collect_hostlist([n.name for n in computes]))
    accounting = spec.slurm.accounting.enabled
    drain = {"DRAIN_TIMEOUT": spec.slurm.drain_timeout_s}
    conf_paths = tuple(sorted(confs))

    munge = render_script("munge", {})
    ctl_restart = restart_key("\n".join(restart_key_lines(slurm_conf)))
    gpu_groups = {n.group for n in computes if n.gpus}
    with_gpus = [p.name for p in partitions(spec, nodes) if not p.groups or gpu_groups & set(p.groups)]
    gpu_partition = "gpu" if "gpu" in with_gpus else next(iter(with_gpus), "")
    all_gpu_types = sorted({t for n in computes for t in gres_types(spec, n)})
    mig_nodes = {n.name: m for n in computes if (m := node_mig(spec, n)) is not None}

    ctl_files = list(confs.values())
    conf_needs = conf_paths
    if uses_node_gres(spec, nodes):
        ctl_files.append(RenderedFile(GRES_NODE_FILE, render_controller_gres_node_file()))
        conf_needs = (*conf_paths, GRES_NODE_FILE)
    ctl_steps = [
        Step(ctl.name, "munge", munge, applies=(MUNGE_KEY,)),
    ]
    secret_paths = [MUNGE_KEY]
    slurmctld_after = ["munge"]  # the state volume is mounted before any step (components/volumes.py)
    if accounting:
        ctl_files.append(mariadb_cnf(ctl))
        secret_paths.append(SLURMDBD_CONF)
        ctl_steps.append(
            Step(
                ctl.name,
                "accounting",
                render_script(
                    "accounting",
                    {
                        "MYSQL_DATADIR": MYSQL_DATADIR,
                        "DB_NAME": spec.slurm.accounting.database,
                        "CLUSTER_NAME": spec.name,
                    },
                ),
                applies=(SLURMDBD_CONF, MARIADB_CNF),
                after=("munge",),
            )
        )
        slurmctld_after.append("accounting")
    ctl_steps.append(
        Step(
            ctl.name,
            "slurmctld",
            render_script(
                "slurmctld",
                {
                    "STATE_SAVE": STATE_SAVE,
                    "RESTART_KEY": ctl_restart,
                    "COMPUTE_NODES": compute_list,
                    "MIG_GRES": mig_gres(spec, nodes),
                    **drain,
                },
                includes=SLURM_INCLUDES,
            ),
            needs=conf_needs,  # restarts follow RESTART_KEY; plain changes are the reconfigure step's job
            after=tuple(slurmctld_after),
        )
    )
    membership = render_script("membership", drain, includes=SLURM_INCLUDES)
    ctl_files.append(membership)
    # After every slurmd and every MIG change: reconfigure re-reads slurm.conf everywhere, then the canary
    # proves it.
    slurmd_steps = tuple(f"{n.name}:slurmd" for n in computes) + tuple(f"{name}:mig" for name in mig_nodes)
    ctl_steps.append(
        Step(
            ctl.name,
            "reconfigure",
            render_script("reconfigure", {"COMPUTE_NODES": compute_list}, includes=SLURM_INCLUDES),
            applies=conf_paths,
            after=("slurmctld", *slurmd_steps),
        )
    )
    # One step per compute node: created when the node has joined (it returns a node this program drained
    # to service), deleted before the node's VM goes or is replaced (it drains the node and waits for its
    # jobs). It carries the node's VM identity, so replacing that VM deletes it first.
    member_steps = []
    for node in computes:
        member = Step(
            ctl.name,
            f"member-{node.name}",
            membership,
            args=("join", node.name),
            delete_args=("leave", node.name),
            after=("slurmctld", f"{node.name}:slurmd"),
            instance_of=node.name,
        )
        ctl_steps.append(member)
        member_steps.append(member.name)
    if spec.slurm.canary and computes:
        ctl_steps.append(
            Step(
                ctl.name,
                "canary",
                render_script(
                    "canary",
                    {
                        "COMPUTE_NODES": compute_list,
                        "GPU_TYPES": " ".join(all_gpu_types),
                        "GPU_PARTITION": gpu_partition,
                        "CANARY_TIMEOUT": CANARY_TIMEOUT_S,
                        "CANARY_METRICS": canary_metrics(spec),
                        "SHARED_DIR": shared_dir(spec),
                    },
                    includes=SLURM_INCLUDES,
                ),
                applies=conf_paths,
                after=("reconfigure", *member_steps),
            )
        )
    result = [NodeSlurm(ctl, tuple(ctl_files), tuple(secret_paths), tuple(ctl_steps))]

    # Compute nodes hold no SLURM file: slurmd fetches them from slurmctld (configless). What restarts a
    # slurmd is only what it puts into effect on its own node (its hardware and GRES, cgroup.conf, the
    # restart-class keys): adding or removing another node changes none of it.
    global_restart = "\n".join(restart_key_lines(slurm_conf, with_nodes=False))
    definitions = node_definitions(spec, nodes)
    conf_server = f"{ctl.mgmt_ip}:{SLURMCTLD_PORT}"
    for node in computes:
        key = restart_key(definitions[node.name], cgroup_conf, global_restart)
        params = {
            "RESTART_KEY": key,
            "CONF_SERVER": conf_server,
            "STALE_FILES": " ".join(conf_paths),
            "GRES_FILE": GRES_NODE_FILE,
            "GRES_SCRIPT": GRES_SCRIPT,
        }
        steps: tuple[Step, ...] = (
            Step(node.name, "munge", munge, applies=(MUNGE_KEY,)),
            Step(
                node.name,
                "slurmd",
                render_script("slurmd", params, includes=SLURM_INCLUDES),
                after=("munge", f"{ctl.name}:slurmctld"),
            ),
        )
        files: tuple[RenderedFile, ...] = ()
        mig = mig_nodes.get(node.name)
        if mig is not None:
            # Last on the node: it may reboot the VM (an Ampere mode change), and nothing may run after that.
            files = mig_files(node.name, mig)
            steps += (
                Step(
                    node.name,
                    "mig",
                    mig_step_script(spec, node.name, mig),
                    applies=tuple(f.path for f in files),
                    after=("slurmd",),
                ),
            )
        result.append(NodeSlurm(node, files, (MUNGE_KEY,), steps))
    return result


def shared_dir(spec: ClusterSpec) -> str:
    """Where the canary checks that one node sees what another wrote: the shared file system, if any."""
    storage = spec.storage
    return storage.mount_point if storage is not None and storage.count else ""


def ordered_steps(plan: list[NodeSlurm]) -> list[Step]:
    """Every step after the steps it requires (stable: plan order among equals). This is the order the
    Pulumi graph allows; the real-SLURM proof runs the steps in exactly this order."""
    return in_dependency_order((s for node in plan for s in node.steps), lambda s: s.key, lambda s: s.requires)
