"""BeeGFS's configuration files and setup scripts, for release 8 and 7.4. Pure.

Every file is written whole from the spec, so what is checked (render/beegfs_check.py, against the keys
BeeGFS's own shipped files and parsers accept) is what the nodes get. Data lives on protected volumes
only: each storage target on its own data volume (XFS), the metadata on the node's meta volume (ext4),
and the management database on the controller's state volume (or the meta volume of the storage node
that runs mgmtd), so replacing any VM keeps the file system. docs/storage.md explains the layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from config.models import ClusterSpec
from config.storage_layout import StorageTarget, mgmtd_node, storage_nodes, storage_targets
from config.topology import NodePlan, Role
from render.common import HEADER_NOTE, RenderedFile, key_values
from render.remote import render_script
from render.volumes import STATE_MOUNT, VOLUME_ROOT

ETC = "/etc/beegfs"
AUTH_FILE = f"{ETC}/conn.auth"
TLS_CERT = f"{ETC}/cert.pem"
TLS_KEY = f"{ETC}/key.pem"
AUTH_BYTES = 128  # what BeeGFS's docs generate: dd if=/dev/random bs=128 count=1
META_DIR = f"{VOLUME_ROOT}/meta/beegfs"  # on the meta volume (render/volumes.py)
MGMTD_PORT = 8008  # beemsg-port (8) / connMgmtdPort
GRPC_PORT = 8010  # the `beegfs` CLI's port (8)
# BeeGFS traffic prefers the interconnect; the management network is the fallback.
INTERFACES = ("hpc0", "mgmt0")


@dataclass(frozen=True)
class BeegfsLayout:
    version: str
    mgmtd: NodePlan
    servers: tuple[NodePlan, ...]
    targets: tuple[StorageTarget, ...]
    mount_point: str
    offline_timeout_s: int

    @property
    def mgmtd_dir(self) -> str:
        """The management data: on a protected volume of whichever node runs mgmtd."""
        if self.mgmtd.role is Role.CONTROLLER:
            return f"{STATE_MOUNT}/beegfs-mgmtd"
        return f"{VOLUME_ROOT}/meta/mgmtd"

    def target_dir(self, target: StorageTarget) -> str:
        """On the target's own data volume (render/volumes.py mounts data-N there)."""
        return f"{VOLUME_ROOT}/data-{target.volume}/beegfs"

    def node_targets(self, node: NodePlan) -> tuple[StorageTarget, ...]:
        return tuple(t for t in self.targets if t.node == node.name)


def beegfs_layout(spec: ClusterSpec, nodes: list[NodePlan]) -> BeegfsLayout:
    storage = spec.storage
    mgmtd = mgmtd_node(spec, nodes)
    assert storage is not None and mgmtd is not None  # config.checks.shared_storage refuses anything else
    return BeegfsLayout(
        storage.beegfs.version,
        mgmtd,
        tuple(storage_nodes(nodes)),
        tuple(storage_targets(nodes)),
        storage.mount_point,
        storage.beegfs.node_offline_timeout_s,
    )


def _conf(pairs: list[tuple[str, object]], what: str) -> str:
    return f"{HEADER_NOTE}: {what}. Edit the stack file, not this file.\n" + key_values(pairs, sep=" = ") + "\n"


def _common(layout: BeegfsLayout) -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = [
        ("sysMgmtdHost", layout.mgmtd.mgmt_ip),
        ("connAuthFile", AUTH_FILE),
        ("connDisableAuthentication", "false"),
        ("connInterfacesList", ",".join(INTERFACES)),
        ("sysTargetOfflineTimeoutSecs", layout.offline_timeout_s),
    ]
    return pairs


def render_meta_conf(layout: BeegfsLayout) -> RenderedFile:
    pairs = [
        *_common(layout),
        ("storeMetaDirectory", META_DIR),
        ("storeAllowFirstRunInit", "false"),  # never initialise an empty directory by accident
        ("logType", "syslog"),
    ]
    return RenderedFile(f"{ETC}/beegfs-meta.conf", _conf(pairs, "BeeGFS metadata service"))


def render_storage_conf(layout: BeegfsLayout, node: NodePlan) -> RenderedFile:
    directories = ",".join(layout.target_dir(t) for t in layout.node_targets(node))
    pairs = [
        *_common(layout),
        ("storeStorageDirectory", directories),
        ("storeAllowFirstRunInit", "false"),
        ("logType", "syslog"),
    ]
    return RenderedFile(f"{ETC}/beegfs-storage.conf", _conf(pairs, "BeeGFS storage service"))


def render_client_conf(layout: BeegfsLayout) -> RenderedFile:
    pairs = _common(layout)
    if layout.version == "7.4":
        pairs.append(("logType", "helperd"))
    return RenderedFile(f"{ETC}/beegfs-client.conf", _conf(pairs, "BeeGFS client"))


def render_mounts_conf(layout: BeegfsLayout) -> RenderedFile:
    # the client service mounts each line: <mount point> <client config>
    text = f"{layout.mount_point} {ETC}/beegfs-client.conf\n"
    return RenderedFile(f"{ETC}/beegfs-mounts.conf", text)


def render_helperd_conf(layout: BeegfsLayout) -> RenderedFile:
    pairs: list[tuple[str, object]] = [("connAuthFile", AUTH_FILE), ("connDisableAuthentication", "false")]
    return RenderedFile(f"{ETC}/beegfs-helperd.conf", _conf(pairs, "BeeGFS 7.4 client helper"))


def render_mgmtd_conf(layout: BeegfsLayout, registration_open: bool) -> RenderedFile:
    """The management service's configuration: TOML for 8, key = value for 7.4. The mgmtd step writes
    it (registration open only while servers it expects are missing), so both variants are rendered."""
    if layout.version == "8":
        lines = [
            f"{HEADER_NOTE}: BeeGFS management service. Edit the stack file, not this file.",
            f'db-file = "{layout.mgmtd_dir}/mgmtd.sqlite"',
            f'auth-file = "{AUTH_FILE}"',
            "auth-disable = false",
            f'tls-cert-file = "{TLS_CERT}"',
            f'tls-key-file = "{TLS_KEY}"',
            "tls-disable = false",
            f"beemsg-port = {MGMTD_PORT}",
            f"grpc-port = {GRPC_PORT}",
            f"interfaces = {json.dumps(list(INTERFACES))}",
            f'node-offline-timeout = "{layout.offline_timeout_s}s"',
            f"registration-disable = {'false' if registration_open else 'true'}",
            'log-target = "journald"',
        ]
        return RenderedFile(f"{ETC}/beegfs-mgmtd.toml", "\n".join(lines) + "\n")
    pairs: list[tuple[str, object]] = [
        ("storeMgmtdDirectory", layout.mgmtd_dir),
        ("storeAllowFirstRunInit", "false"),
        ("sysAllowNewServers", "true" if registration_open else "false"),
        ("connAuthFile", AUTH_FILE),
        ("connDisableAuthentication", "false"),
        ("connInterfacesList", ",".join(INTERFACES)),
        ("sysTargetOfflineTimeoutSecs", layout.offline_timeout_s),
        ("logType", "syslog"),
    ]
    return RenderedFile(f"{ETC}/beegfs-mgmtd.conf", _conf(pairs, "BeeGFS management service"))


def beegfs_config_files(layout: BeegfsLayout, clients: list[NodePlan]) -> dict[str, tuple[RenderedFile, ...]]:
    """Every BeeGFS configuration file each node receives as a file (secrets, scripts and mgmtd's own
    configuration, which its step writes, aside), by node name."""
    client_files = [render_client_conf(layout), render_mounts_conf(layout)]
    if layout.version == "7.4":
        client_files.append(render_helperd_conf(layout))
    files: dict[str, list[RenderedFile]] = {c.name: list(client_files) for c in clients}
    for server in layout.servers:
        files.setdefault(server.name, []).extend([render_meta_conf(layout), render_storage_conf(layout, server)])
    if layout.mgmtd.name not in {c.name for c in clients}:
        # the CLI on mgmtd's node reads the client configuration (7.4's beegfs-ctl: mgmtd's address)
        files.setdefault(layout.mgmtd.name, []).append(render_client_conf(layout))
    return {node: tuple(found) for node, found in sorted(files.items())}


def mgmtd_tls_names(spec: ClusterSpec, layout: BeegfsLayout) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DNS names, addresses) the management service's certificate carries: every way a CLI reaches it."""
    node = layout.mgmtd
    names = ("localhost", node.name, f"{node.name}.{spec.networks.management.domain}")
    return names, ("127.0.0.1", node.mgmt_ip, node.ic_ip)


def expected_ids(layout: BeegfsLayout) -> str:
    """What mgmtd must know once every server has registered: meta and storage node ids, target ids."""
    meta = " ".join(f"meta:{n.index}" for n in layout.servers)
    storage = " ".join(f"storage:{n.index}" for n in layout.servers)
    targets = " ".join(f"target:{t.target_id}" for t in layout.targets)
    return " ".join(p for p in (meta, storage, targets) if p)


def render_mgmtd_script(layout: BeegfsLayout, phase: str) -> RenderedFile:
    """phase `open`: start mgmtd, letting servers register while some it expects are missing; `close`:
    check every expected server and target registered, then forbid further registration."""
    params = {
        "VERSION": layout.version,
        "PHASE": phase,
        "DATA_DIR": layout.mgmtd_dir,
        "EXPECTED": expected_ids(layout),
        "CONF_OPEN": render_mgmtd_conf(layout, registration_open=True).content.rstrip("\n"),
        "CONF_CLOSED": render_mgmtd_conf(layout, registration_open=False).content.rstrip("\n"),
        "WAIT": max(120, 2 * layout.offline_timeout_s),
    }
    return render_script("beegfs-mgmtd", params, includes=("lib.sh", "beegfs-lib.sh"))


def render_server_script(layout: BeegfsLayout, node: NodePlan) -> RenderedFile:
    targets = " ".join(f"{t.target_id}:{layout.target_dir(t)}" for t in layout.node_targets(node))
    params = {
        "VERSION": layout.version,
        "NODE_ID": node.index,
        "MGMTD": layout.mgmtd.mgmt_ip,
        "META_DIR": META_DIR,
        "TARGETS": targets,
    }
    return render_script("beegfs-server", params, includes=("lib.sh", "beegfs-lib.sh"))


def render_client_script(layout: BeegfsLayout) -> RenderedFile:
    params = {
        "VERSION": layout.version,
        "MGMTD": layout.mgmtd.mgmt_ip,
        "MOUNT": layout.mount_point,
        "WAIT": max(120, 2 * layout.offline_timeout_s),
    }
    return render_script("beegfs-client", params, includes=("lib.sh", "beegfs-lib.sh"))


def cli_chunk_size(version: str, chunk: str) -> str:
    """A chunk size as each CLI takes it: 512k / 1m for 7.4's beegfs-ctl, 512Ki / 1Mi for 8's beegfs."""
    if version == "7.4":
        return chunk
    return chunk[:-1] + {"k": "Ki", "m": "Mi"}[chunk[-1]]


def cli_target(version: str, target_id: int) -> str:
    """A storage target as each CLI names it: 101 for beegfs-ctl, storage:101 for beegfs."""
    return str(target_id) if version == "7.4" else f"storage:{target_id}"


def render_layout_script(spec: ClusterSpec, layout: BeegfsLayout) -> RenderedFile:
    """Mirror groups, pools and stripe patterns, applied through the CLI on the controller."""
    storage = spec.storage
    assert storage is not None
    beegfs, version = storage.beegfs, layout.version
    by_ref = {t.reference: t for t in layout.targets}
    pools = " ".join(
        f"{p.name}={','.join(cli_target(version, by_ref[r].target_id) for r in p.targets)}" for p in beegfs.pools
    )
    directories = " ".join(
        "|".join(
            [
                d.path,
                cli_chunk_size(version, d.chunk_size) if d.chunk_size else "",
                str(d.num_targets or ""),
                d.pool or "",
                "mirrored" if d.mirrored else "raid0",
            ]
        )
        for d in beegfs.directories
    )
    params = {
        "VERSION": version,
        "MGMTD": layout.mgmtd.mgmt_ip,
        "MOUNT": layout.mount_point,
        "MIRROR_STORAGE": int(beegfs.mirror_storage),
        "MIRROR_METADATA": int(beegfs.mirror_metadata),
        "POOLS": pools,
        "ROOT_CHUNK": cli_chunk_size(version, beegfs.chunk_size),
        "ROOT_TARGETS": min(beegfs.num_targets, max(1, len(layout.targets))),
        "DIRECTORIES": directories,
    }
    return render_script("beegfs-layout", params, includes=("lib.sh", "beegfs-lib.sh"))
