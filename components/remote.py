"""Building blocks for components that configure nodes over SSH: one remote.Command per file and per step.

They are called from inside a component's __init__ with `parent=self`, so no resource lives outside a
component. Each Command's triggers hold the hash of exactly what it applies: a changed slurm.conf
re-runs only the SLURM steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command.remote as remote

from render.access import SshRoute
from render.common import RenderedFile, content_hash
from render.remote import install_command, run_command

# pulumi-command retries a failed dial with a backoff that starts at 0.1 s and grows to 5 s between tries,
# so about 12 s pass in the first 10 tries and 5 s in each one after.
PER_DIAL_TIMEOUT_S = 10


def dial_error_limit(timeout_s: int) -> int:
    return 10 + max(0, timeout_s - 12) // 5


def node_connection(route: SshRoute, private_key: pulumi.Input[str] | None, timeout_s: int) -> remote.ConnectionArgs:
    proxy = None
    if route.jump:
        user, _, host = route.jump.rpartition("@")
        hostname, _, port = host.partition(":")
        proxy = remote.ProxyConnectionArgs(
            host=hostname,
            user=user or "root",
            port=float(port or 22),
            private_key=private_key,
            per_dial_timeout=PER_DIAL_TIMEOUT_S,
        )
    return remote.ConnectionArgs(
        host=route.host,
        user=route.user,
        private_key=private_key,  # None: pulumi-command falls back to ssh-agent (SSH_AUTH_SOCK)
        per_dial_timeout=PER_DIAL_TIMEOUT_S,
        dial_error_limit=dial_error_limit(timeout_s),
        proxy=proxy,
    )


def push_file(
    name: str,
    file: RenderedFile,
    connection: remote.ConnectionArgs,
    user: str,
    parent: pulumi.Resource,
    content: pulumi.Input[str] | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
    base64: bool = False,
) -> remote.Command:
    """Write one file on a node. `content` overrides file.content for deploy-time (secret) values."""
    if content is None:
        body: pulumi.Input[str] = file.content
        trigger: pulumi.Input[str] = content_hash(file.content)
    else:
        body = pulumi.Output.secret(content) if file.secret else content
        hashed = pulumi.Output.from_input(content).apply(lambda text: content_hash(text))
        trigger = pulumi.Output.secret(hashed) if file.secret else hashed
    return remote.Command(
        name,
        connection=connection,
        create=install_command(file, user, base64=base64),
        stdin=body,
        triggers=[trigger],
        # No delete: a replacement is created before the old one is deleted, and must not remove the new file.
        logging=remote.Logging.STDERR,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )


def run_script(
    name: str,
    script_path: str,
    triggers: Sequence[pulumi.Input[str]],
    connection: remote.ConnectionArgs,
    user: str,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource],
    args: tuple[str, ...] = (),
) -> remote.Command:
    return remote.Command(
        name,
        connection=connection,
        create=run_command(script_path, user, args),
        triggers=list(triggers),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
