"""BeegfsServices: BeeGFS's management, metadata, storage and client services, in dependency order.

1. The shared auth file (128 random bytes, secret) on every BeeGFS node; for release 8 also the
   management service's TLS key (its node only) and certificate (every node, for the `beegfs` CLI).
2. mgmtd, with registration open while servers it expects are missing.
3. Each storage node's metadata and storage services, on their protected volumes.
4. mgmtd again: every expected server and target registered, registration closed.
5. Each client's mount (the controller and every compute node), then the layout (mirrors, pools,
   stripe patterns) once, from the controller.

Adding a compute node adds only its own files and mount. Every step's script is idempotent
(render/scripts/beegfs-*.sh), so re-running any of them changes nothing that is already right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command.remote as remote
import pulumi_random as random

from components.identity import token, with_aliases
from components.node import as_secret
from components.remote import NodeAccess, file_slug, push_file, run_script
from config.models import ClusterSpec
from config.topology import NodePlan, Role
from render.beegfs import (
    AUTH_BYTES,
    AUTH_FILE,
    TLS_CERT,
    TLS_KEY,
    beegfs_config_files,
    beegfs_layout,
    mgmtd_tls_names,
    render_client_script,
    render_layout_script,
    render_mgmtd_script,
    render_server_script,
)
from render.common import RenderedFile, content_hash
from render.tls import self_signed

TLS_SEED_BYTES = 32  # an Ed25519 private key (render/tls.py)


@dataclass(frozen=True)
class BeegfsServicesArgs:
    spec: ClusterSpec
    nodes: list[NodePlan]
    access: dict[str, NodeAccess]


class BeegfsServices(pulumi.ComponentResource):
    mounts: dict[str, remote.Command]  # client node -> its mount step

    def __init__(self, name: str, args: BeegfsServicesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("BeegfsServices"), name, None, with_aliases("BeegfsServices", opts))
        spec, nodes, access = args.spec, args.nodes, args.access
        layout = beegfs_layout(spec, nodes)
        child = pulumi.ResourceOptions(parent=self)
        clients = [n for n in nodes if n.role in (Role.CONTROLLER, Role.COMPUTE)]
        members = {n.name: n for n in (layout.mgmtd, *layout.servers, *clients)}

        def push(
            node: str, file: RenderedFile, content: pulumi.Input[str] | None = None, b64: bool = False
        ) -> remote.Command:
            return push_file(f"{name}-{node}-{file_slug(file.path)}", file, access[node], self, content, base64=b64)

        auth = random.RandomBytes(f"{name}-auth", length=AUTH_BYTES, opts=child)
        auth_file = RenderedFile(AUTH_FILE, "", "0400", secret=True, dir_mode="0755")
        auth_hash = as_secret(auth.base64.apply(content_hash))
        secrets: dict[str, list[remote.Command]] = {
            node: [push(node, auth_file, as_secret(auth.base64), b64=True)] for node in sorted(members)
        }
        if layout.version == "8":
            seed = random.RandomBytes(f"{name}-tls-seed", length=TLS_SEED_BYTES, opts=child)
            dns_names, addresses = mgmtd_tls_names(spec, layout)
            pair = as_secret(seed.base64).apply(lambda s: self_signed(s, "beegfs-mgmtd", dns_names, addresses))
            key = RenderedFile(TLS_KEY, "", "0400", secret=True)
            secrets[layout.mgmtd.name].append(push(layout.mgmtd.name, key, as_secret(pair.apply(lambda p: p.key_pem))))
            cert = RenderedFile(TLS_CERT, "")
            # The certificate is public; it is derived from the secret seed, so unwrap it explicitly.
            cert_pem = pulumi.Output.unsecret(pair.apply(lambda p: p.cert_pem))
            for node in sorted(members):
                secrets[node].append(push(node, cert, cert_pem))

        def step(node: NodePlan, what: str, script: RenderedFile, after: Sequence[pulumi.Resource]) -> remote.Command:
            return run_script(
                f"{name}-{node.name}-{what}",
                script,
                [auth_hash],
                access[node.name],
                self,
                [*secrets[node.name], *after],
            )

        files = {
            node: {file.path: push(node, file) for file in node_files}
            for node, node_files in beegfs_config_files(layout, clients).items()
        }
        opened = step(
            layout.mgmtd,
            "mgmtd-open",
            render_mgmtd_script(layout, "open"),
            [*files.get(layout.mgmtd.name, {}).values()],
        )
        served = [
            step(server, "servers", render_server_script(layout, server), [*files[server.name].values(), opened])
            for server in layout.servers
        ]
        closed = step(layout.mgmtd, "mgmtd-close", render_mgmtd_script(layout, "close"), [opened, *served])
        mount_script = render_client_script(layout)
        self.mounts = {
            client.name: step(client, "client", mount_script, [*files[client.name].values(), closed])
            for client in clients
        }

        controller = next(n for n in clients if n.role is Role.CONTROLLER)
        step(controller, "layout", render_layout_script(spec, layout), [self.mounts[controller.name]])
        self.register_outputs({})
