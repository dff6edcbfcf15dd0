"""SlurmCluster: munge, accounting, slurmctld and slurmd pushed into running VMs, then a canary job."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_command.remote as remote
import pulumi_random as random

from components.identity import token, with_aliases
from components.node import as_secret
from components.remote import NodeAccess, file_slug, push_file, run_installed, run_script
from config.models import ClusterSpec
from config.topology import NodePlan
from render.common import RenderedFile, content_hash
from render.slurm import controller, render_slurmdbd_conf
from render.slurm_deploy import (
    MUNGE_KEY,
    MUNGE_KEY_BYTES,
    SLURMDBD_CONF,
    Step,
    ordered_steps,
    slurm_plan,
)


@dataclass(frozen=True)
class SlurmClusterArgs:
    spec: ClusterSpec
    nodes: list[NodePlan]
    access: dict[str, NodeAccess]  # node name -> how Commands reach it (connection, VM identity, packages)
    shared_mounts: tuple[pulumi.Resource, ...] = ()  # the shared file system's mounts: the canary uses them


class SlurmCluster(pulumi.ComponentResource):
    canary: pulumi.Output[object] | None
    steps: dict[str, remote.Command]  # "node:step" -> its Command, for what must follow a step (MIG)

    def __init__(self, name: str, args: SlurmClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("SlurmCluster"), name, None, with_aliases("SlurmCluster", opts))
        spec, nodes = args.spec, args.nodes
        child = pulumi.ResourceOptions(parent=self)

        # Created once and kept in state: the same key on every node, stable across runs.
        munge_key = random.RandomBytes(f"{name}-munge-key", length=MUNGE_KEY_BYTES, opts=child)
        db_password = random.RandomPassword(f"{name}-db-password", length=32, special=False, opts=child)

        plan = slurm_plan(spec, nodes)
        steps: dict[str, remote.Command] = {}  # "node:step" -> command
        files: dict[str, dict[str, remote.Command]] = {}
        hashes: dict[str, dict[str, pulumi.Input[str]]] = {}
        munge_file = RenderedFile(MUNGE_KEY, "", "0400", "munge:munge", True, dir_mode="0700", dir_owner="munge:munge")
        secret_files = {
            MUNGE_KEY: (munge_file, as_secret(munge_key.base64)),
            SLURMDBD_CONF: (
                RenderedFile(SLURMDBD_CONF, "", mode="0600", owner="slurm:slurm", secret=True),
                as_secret(db_password.result).apply(lambda pw: render_slurmdbd_conf(spec, nodes, pw)),
            ),
        }

        def script_step(step: Step) -> remote.Command:
            node = step.node
            after = [steps[key] for key in step.requires]
            applied = [files[node][p] for p in (*step.applies, *step.needs)]
            if step.delete_args is not None:
                about = args.access[step.instance_of or node]
                return run_installed(
                    f"{name}-{node}-{step.name}",
                    step.script.path,
                    [about.instance],
                    args.access[node],
                    self,
                    [files[node][step.script.path], *applied, *after, about.domain],
                    step.args,
                    step.delete_args,
                )
            extra = list(args.shared_mounts) if step.name == "canary" else []
            return run_script(
                f"{name}-{node}-{step.name}",
                step.script,
                [hashes[node][p] for p in step.applies],
                args.access[node],
                self,
                [*applied, *after, *extra],
                step.args,
            )

        for node_slurm in plan:
            node = node_slurm.node.name
            access = args.access[node]
            files[node], hashes[node] = {}, {}
            for file in node_slurm.files:
                files[node][file.path] = push_file(f"{name}-{node}-{file_slug(file.path)}", file, access, self)
                hashes[node][file.path] = content_hash(file.content)
            for path in node_slurm.secret_paths:
                template, value = secret_files[path]
                files[node][path] = push_file(
                    f"{name}-{node}-{file_slug(path)}",
                    template,
                    access,
                    self,
                    content=value,
                    base64=path == MUNGE_KEY,
                )
                hashes[node][path] = pulumi.Output.secret(pulumi.Output.from_input(value).apply(content_hash))

        for step in ordered_steps(plan):
            steps[step.key] = script_step(step)

        self.steps = steps
        canary = steps.get(f"{controller(nodes).name}:canary")
        self.canary = canary.stdout.apply(_parse_canary) if canary is not None else None
        self.register_outputs({"canary": self.canary})


def _parse_canary(stdout: str) -> object:
    lines = [line for line in (stdout or "").splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"status": "not run yet"}
