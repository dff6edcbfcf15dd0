"""Shared storage: the file system every node mounts, served by the storage nodes.

Two backends. BeeGFS spreads files over the storage nodes' data volumes (one storage target per data
volume, one metadata volume per node) and mirrors them if asked; it is the default. NFS serves one
storage node's first data volume with the kernel's NFS server: for a single small workstation, where
BeeGFS buys nothing. Both mount at the same path on the controller and on every compute node.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, Strict

from config.findings import brief
from config.impact import Impact, setting
from config.models.base import Model
from config.models.repository import AptRepository
from config.types import GiB, Hostname, NonEmptyStr, Seconds

_ABSOLUTE_RE = re.compile(r"^/[A-Za-z0-9._/-]*$")
_CHUNK_RE = re.compile(r"^(\d+)([kKmM])$")
# Where a shared file system must not be mounted: the system's own trees.
_SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/proc", "/root", "/run", "/sbin", "/sys",
                "/tmp", "/usr", "/var")  # fmt: skip


def _mount_point(value: str) -> str:
    if not _ABSOLUTE_RE.match(value) or "//" in value or "/../" in f"{value}/" or value.rstrip("/") in _SYSTEM_DIRS:
        raise ValueError(
            f"{brief(value)} is not a usable mount point: give an absolute path of letters, digits, '.', '_', "
            "'-' and '/', outside the system's own directories, e.g. /shared"
        )
    return value.rstrip("/")


def _chunk_size(value: str) -> str:
    m = _CHUNK_RE.match(value)
    size = int(m.group(1)) * (1024 if m.group(2).lower() == "k" else 1024 * 1024) if m else 0
    # BeeGFS chunk sizes are powers of two of at least 64 KiB (beegfs entry set / beegfs-ctl --setpattern)
    if not m or size < 64 * 1024 or size & (size - 1):
        raise ValueError(f"{brief(value)} is not a BeeGFS chunk size: a power of two of 64k or more, e.g. 512k or 1m")
    return value.lower()


MountPoint = Annotated[str, AfterValidator(_mount_point)]
ChunkSize = Annotated[str, AfterValidator(_chunk_size)]
TargetCount = Annotated[int, Strict(), Field(gt=0, le=1024)]


# ThinkParQ's repository for Debian 12 per release: (release directory, distribution). Sources in
# docs/storage.md; 8.x names the distribution by codename, 7.x as deb<N> (its own .list files).
BEEGFS_RELEASES = {"8": ("beegfs_8.3", "bookworm"), "7.4": ("beegfs_7.4.6", "deb12")}
BEEGFS_KEY_FINGERPRINT = "0683AF2B9AC5BC7D59B2D62340CE4E243CD50804"


def beegfs_repository(version: str) -> AptRepository:
    """ThinkParQ's repository for Debian 12 and its signing key."""
    release, suite = BEEGFS_RELEASES[version]
    return AptRepository(
        name="beegfs",
        url=f"https://www.beegfs.io/release/{release}",
        suite=suite,
        components=["non-free"],
        key_url=f"https://www.beegfs.io/release/{release}/gpg/GPG-KEY-beegfs",
        key_fingerprint=BEEGFS_KEY_FINGERPRINT,
    )


# BeeGFS's services refuse to start with sysTargetOfflineTimeoutSecs below 30 (their config parsers).
MIN_OFFLINE_TIMEOUT_S = 30


class NfsSettings(Model):
    root_squash: bool = setting(
        True,
        impact=Impact.RECONFIGURE,
        doc="Map root on the clients to nobody on the share (NFS's default, and safer); false lets root on "
        "every node own files on it.",
    )


class BeegfsPool(Model):
    name: Hostname = setting(impact=Impact.RECONFIGURE, doc="Pool name (its alias in BeeGFS).")
    targets: list[NonEmptyStr] = setting(
        impact=Impact.RECONFIGURE,
        doc="Storage targets in the pool, as <storage node>:<data volume number>, e.g. storage-01:2.",
        min_length=1,
    )


class BeegfsDirectory(Model):
    path: NonEmptyStr = setting(
        impact=Impact.RECONFIGURE, doc="Directory below the mount point, e.g. scratch (created if missing)."
    )
    chunk_size: ChunkSize | None = setting(None, impact=Impact.RECONFIGURE, doc="Stripe chunk size, e.g. 512k.")
    num_targets: TargetCount | None = setting(None, impact=Impact.RECONFIGURE, doc="Targets each file is striped over.")
    pool: Hostname | None = setting(None, impact=Impact.RECONFIGURE, doc="Storage pool of new files here.")
    mirrored: bool = setting(
        False, impact=Impact.RECONFIGURE, doc="Buddy-mirror new files here (needs mirror_storage)."
    )


class BeegfsSettings(Model):
    version: Literal["8", "7.4"] = setting(
        "8", impact=Impact.RESTART, doc="BeeGFS release: 8 (mgmtd with TOML, TLS, the `beegfs` CLI) or 7.4."
    )
    repository: AptRepository | None = setting(
        None,
        impact=Impact.RESTART,
        doc="Where the packages come from; defaults to ThinkParQ's repository for the version. Point it at a "
        "site mirror with its own key fingerprint.",
    )
    mgmtd: Hostname = setting(
        "controller",
        impact=Impact.RESTART,
        doc="Node that runs the management service: the controller, or a storage node by name (storage-01).",
    )
    metadata_gib: GiB = setting(
        10, impact=Impact.DATA_AT_RISK, doc="Protected metadata volume on each storage node (one meta service each)."
    )
    chunk_size: ChunkSize = setting("1m", impact=Impact.RECONFIGURE, doc="Default stripe chunk size of the root.")
    num_targets: TargetCount = setting(
        4, impact=Impact.RECONFIGURE, doc="Default targets per file (capped by those that exist)."
    )
    mirror_storage: bool = setting(
        False, impact=Impact.RECONFIGURE, doc="Buddy mirror groups over the storage targets (needs an even number)."
    )
    mirror_metadata: bool = setting(
        False,
        impact=Impact.RECONFIGURE,
        doc="Buddy-mirror the metadata (needs an even number of storage nodes). Irreversible: BeeGFS cannot turn "
        "it off again.",
        irreversible=True,
    )
    pools: list[BeegfsPool] = setting([], impact=Impact.RECONFIGURE, doc="Storage pools besides the default one.")
    directories: list[BeegfsDirectory] = setting(
        [], impact=Impact.RECONFIGURE, doc="Per-directory stripe patterns below the mount point."
    )
    node_offline_timeout_s: Seconds = setting(
        180,
        impact=Impact.RESTART,
        doc="Seconds before a silent server counts as offline: mgmtd's node-offline-timeout and every service's "
        "sysTargetOfflineTimeoutSecs, kept equal.",
        ge=MIN_OFFLINE_TIMEOUT_S,
    )

    @property
    def apt(self) -> AptRepository:
        return self.repository or beegfs_repository(self.version)


StorageBackend = Literal["beegfs", "nfs"]
# Twice the storage space "emergency" limit of each release's management service (8: 10 GiB, 7.4: 20 GiB):
# below that limit a target is in the emergency pool and used only when no other target can take a file,
# so a smaller target would be full-and-avoided from its first day (docs/storage.md).
MIN_TARGET_GIB = {"8": 20, "7.4": 40}
