"""SlurmCluster: munge, accounting, slurmctld and slurmd pushed into running VMs, then a canary job."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_command.remote as remote
import pulumi_random as random

from components.remote import node_connection, push_file, run_script
from config.models import ClusterSpec
from config.topology import NodePlan, Role
from render.access import ssh_route
from render.common import RenderedFile, content_hash
from render.remote import LIBEXEC
from render.slurm import render_slurmdbd_conf
from render.slurm_deploy import MUNGE_KEY, MUNGE_KEY_BYTES, SLURMDBD_CONF, ordered_steps, slurm_plan


@dataclass(frozen=True)
class SlurmClusterArgs:
    spec: ClusterSpec
    nodes: list[NodePlan]
    vms: dict[str, pulumi.Resource]  # node name -> its VM component: steps wait for the VM to exist
    hosts_files: dict[str, pulumi.Resource]  # node name -> its /etc/hosts push: SLURM needs every peer to resolve
    ssh_private_key: pulumi.Input[str] | None = None


class SlurmCluster(pulumi.ComponentResource):
    canary: pulumi.Output[object] | None

    def __init__(self, name: str, args: SlurmClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hyperscaler:hpc:SlurmCluster", name, None, opts)
        spec, nodes = args.spec, args.nodes
        user = spec.ssh.user
        child = pulumi.ResourceOptions(parent=self)

        # Created once and kept in state: the same key on every node, stable across runs.
        munge_key = random.RandomBytes(f"{name}-munge-key", length=MUNGE_KEY_BYTES, opts=child)
        db_password = random.RandomPassword(f"{name}-db-password", length=32, special=False, opts=child)

        plan = slurm_plan(spec, nodes)
        steps: dict[str, remote.Command] = {}  # "node:step" -> command
        files: dict[str, dict[str, remote.Command]] = {}
        hashes: dict[str, dict[str, pulumi.Input[str]]] = {}
        connections: dict[str, remote.ConnectionArgs] = {}
        secret_files = {
            MUNGE_KEY: (
                RenderedFile(
                    MUNGE_KEY,
                    "",
                    mode="0400",
                    owner="munge:munge",
                    secret=True,
                    dir_mode="0700",
                    dir_owner="munge:munge",
                ),
                munge_key.base64,
            ),
            SLURMDBD_CONF: (
                RenderedFile(SLURMDBD_CONF, "", mode="0600", owner="slurm:slurm", secret=True),
                db_password.result.apply(lambda pw: render_slurmdbd_conf(spec, nodes, pw)),
            ),
        }

        for node_slurm in plan:
            node = node_slurm.node.name
            ready = [args.vms[node], args.hosts_files[node]]
            conn = node_connection(ssh_route(spec, node_slurm.node), args.ssh_private_key, spec.ssh.connect_timeout_s)
            connections[node] = conn
            files[node], hashes[node] = {}, {}
            for file in node_slurm.files:
                slug = file.path.strip("/").replace("/", "-").replace(".", "-")
                files[node][file.path] = push_file(f"{name}-{node}-{slug}", file, conn, user, self, depends_on=ready)
                hashes[node][file.path] = content_hash(file.content)
            for path in node_slurm.secret_paths:
                template, value = secret_files[path]
                slug = path.strip("/").replace("/", "-").replace(".", "-")
                files[node][path] = push_file(
                    f"{name}-{node}-{slug}",
                    template,
                    conn,
                    user,
                    self,
                    content=value,
                    depends_on=ready,
                    base64=path == MUNGE_KEY,
                )
                hashes[node][path] = pulumi.Output.secret(pulumi.Output.from_input(value).apply(content_hash))

        for step in ordered_steps(plan):
            node = step.node
            after = [steps[key] for key in step.requires]
            applied = [files[node][p] for p in (*step.applies, *step.needs)]
            steps[step.key] = run_script(
                f"{name}-{node}-{step.name}",
                step.script.path,
                triggers=[content_hash(step.script.content), *(hashes[node][p] for p in step.applies)],
                connection=connections[node],
                user=user,
                parent=self,
                depends_on=[files[node][step.script.path], *applied, *after],
                args=step.args,
            )

        # Removing a compute node: its drain command is deleted first (it depends on the VM), so SLURM
        # drains the node and waits for its jobs before the VM goes away.
        ctl = next(n for n in nodes if n.role is Role.CONTROLLER)
        for compute in (n for n in nodes if n.role is Role.COMPUTE):
            remote.Command(
                f"{name}-{compute.name}-drain",
                connection=connections[ctl.name],
                create=f"true  # drains {compute.name} when it leaves the stack",
                delete=f"{'' if user == 'root' else 'sudo -n '}{LIBEXEC}/drain.sh {compute.name}",
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[
                        args.vms[compute.name],
                        steps[f"{ctl.name}:slurmctld"],
                        files[ctl.name][f"{LIBEXEC}/drain.sh"],
                    ],
                ),
            )

        canary = steps.get(f"{ctl.name}:canary")
        self.canary = canary.stdout.apply(_parse_canary) if canary is not None else None
        self.register_outputs({"canary": self.canary})


def _parse_canary(stdout: str) -> object:
    lines = [line for line in (stdout or "").splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"status": "not run yet"}
