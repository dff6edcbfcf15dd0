"""Building blocks for components that configure nodes over SSH: one remote.Command per file and per step.

They are called from inside a component's __init__ with `parent=self`, so no resource lives outside a
component. Each Command's triggers hold the hash of exactly what it applies: a changed slurm.conf
re-runs only the SLURM steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command.remote as remote

from components.node import Node
from config.models import ClusterSpec
from config.topology import NodePlan
from render.access import SshRoute, ssh_route
from render.common import RenderedFile, content_hash
from render.remote import install_and_run_command, install_command, remove_command, run_command

# pulumi-command retries a failed dial with a backoff that starts at 0.1 s and grows to 5 s between tries,
# so about 12 s pass in the first 10 tries and 5 s in each one after.
PER_DIAL_TIMEOUT_S = 10


def dial_error_limit(timeout_s: int) -> int:
    return 10 + max(0, timeout_s - 12) // 5


def node_connection(
    route: SshRoute,
    private_key: pulumi.Input[str] | None,
    timeout_s: int,
    host_key: pulumi.Input[str],
) -> remote.ConnectionArgs:
    """The SSH connection to a node, with its host key pinned (and the jump host's, when there is one):
    pulumi-command refuses a server that presents any other key, so nothing is sent to an impostor."""
    proxy = None
    if route.jump:
        if not route.jump_host_key:
            # config.checks.host_definitions refuses such a stack before anything is declared
            raise ValueError(f"no host key for the jump host {route.jump}")
        user, _, host = route.jump.rpartition("@")
        hostname, _, port = host.partition(":")
        proxy = remote.ProxyConnectionArgs(
            host=hostname,
            user=user or "root",
            port=float(port or 22),
            private_key=private_key,
            per_dial_timeout=PER_DIAL_TIMEOUT_S,
            host_key=route.jump_host_key,
        )
    return remote.ConnectionArgs(
        host=route.host,
        user=route.user,
        private_key=private_key,  # None: pulumi-command falls back to ssh-agent (SSH_AUTH_SOCK)
        per_dial_timeout=PER_DIAL_TIMEOUT_S,
        dial_error_limit=dial_error_limit(timeout_s),
        proxy=proxy,
        host_key=host_key,
    )


@dataclass(frozen=True)
class NodeAccess:
    """How Commands reach one node, and what makes them run again.

    `instance` is the VM's domain id: it goes into every Command's triggers, so a replaced VM (a new
    domain) gets every file and step again, and with delete-before-replace the engine deletes the node's
    Commands, the drain among them, before the old domain."""

    name: str
    user: str
    connection: remote.ConnectionArgs
    instance: pulumi.Output[str]
    domain: pulumi.Resource  # the VM itself: its Domain waits for its volumes and cloud-init disk
    after: tuple[pulumi.Resource, ...] = ()  # what every Command on the node waits for (its packages)


def node_access(spec: ClusterSpec, node: NodePlan, vm: Node, private_key: pulumi.Input[str] | None) -> NodeAccess:
    connection = node_connection(ssh_route(spec, node), private_key, spec.ssh.connect_timeout_s, vm.host_key)
    return NodeAccess(node.name, spec.ssh.user, connection, vm.domain_id, vm.domain)


def file_slug(path: str) -> str:
    """A resource name part for the file at `path`: /etc/beegfs/conn.auth -> etc-beegfs-conn-auth."""
    return path.strip("/").replace("/", "-").replace(".", "-").replace(":", "-")


def push_file(
    name: str,
    file: RenderedFile,
    node: NodeAccess,
    parent: pulumi.Resource,
    content: pulumi.Input[str] | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
    base64: bool = False,
    removable: bool = False,
) -> remote.Command:
    """Write one file on a node. `content` overrides file.content for deploy-time (secret) values.

    A `removable` file goes when its Command is deleted (a scrape target whose node leaves); a change
    deletes the old file before writing the new one, so the replacement's file stays."""
    if content is None:
        body: pulumi.Input[str] = file.content
        trigger: pulumi.Input[str] = content_hash(file.content)
    else:
        body = pulumi.Output.secret(content) if file.secret else content
        hashed = pulumi.Output.from_input(content).apply(lambda text: content_hash(text))
        trigger = pulumi.Output.secret(hashed) if file.secret else hashed
    return remote.Command(
        name,
        connection=node.connection,
        create=install_command(file, node.user, base64=base64),
        # Otherwise no delete: a replacement is created before the old one is deleted, and must not remove
        # the new file.
        delete=remove_command(file.path, node.user) if removable else None,
        stdin=body,
        triggers=[trigger, node.instance],
        logging=remote.Logging.STDERR,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[node.domain, *node.after, *depends_on],
            delete_before_replace=removable,
        ),
    )


def run_script(
    name: str,
    script: RenderedFile,
    triggers: Sequence[pulumi.Input[str]],
    node: NodeAccess,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    args: tuple[str, ...] = (),
) -> remote.Command:
    """Install `script` on the node and run it, in one Command that re-runs when the script (its
    parameters included) or any of `triggers` changes, or the VM is new."""
    return remote.Command(
        name,
        connection=node.connection,
        create=install_and_run_command(script, node.user, args),
        stdin=script.content,
        triggers=[content_hash(script.content), *triggers, node.instance],
        logging=remote.Logging.STDERR,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[node.domain, *node.after, *depends_on]),
    )


def run_installed(
    name: str,
    script_path: str,
    triggers: Sequence[pulumi.Input[str]],
    node: NodeAccess,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource],
    args: tuple[str, ...],
    delete_args: tuple[str, ...],
) -> remote.Command:
    """Run a script pushed on its own, and run it again with `delete_args` when the Command is deleted.
    Only `triggers` replace it: a Command with a delete action must never be replaced for a script change,
    or the old one's delete would run (for the membership step: drain a node that stays)."""
    return remote.Command(
        name,
        connection=node.connection,
        create=run_command(script_path, node.user, args),
        delete=run_command(script_path, node.user, delete_args),
        triggers=[*triggers, node.instance],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[node.domain, *node.after, *depends_on]),
    )
