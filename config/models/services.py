"""Sections for the software pushed into the VMs: SLURM, BeeGFS, MIG, containers and monitoring.

Changing anything here reconfigures the running cluster; it never replaces a VM.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from config.impact import Impact, setting
from config.models.base import Model
from config.types import Count, Hostname, MiB, NonEmptyStr, PositiveInt


class Partition(Model):
    name: Hostname = setting(impact=Impact.RECONFIGURE, doc="Partition name.")
    groups: list[Hostname] = setting(
        [], impact=Impact.RECONFIGURE, doc="Compute groups in the partition; empty means every group."
    )
    default: bool = setting(False, impact=Impact.RECONFIGURE, doc="Jobs without -p land here.")
    max_time: NonEmptyStr = setting("INFINITE", impact=Impact.RECONFIGURE, doc="MaxTime, e.g. 1-00:00:00.")
    options: dict[str, str] = setting({}, impact=Impact.RECONFIGURE, doc="Extra PartitionName keys.")


class Accounting(Model):
    enabled: bool = setting(True, impact=Impact.RESTART, doc="slurmdbd + MariaDB on the controller; sacct works.")
    database: str = setting(
        "slurm_acct_db", impact=Impact.RESTART, doc="MariaDB database name.", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
    )


# slurm.conf keys the program derives from the rest of the spec. Overriding them would let the file
# disagree with the VMs, networks or accounting setup, so `slurm.options` refuses them.
SLURM_OWNED_KEYS = frozenset(
    k.lower()
    for k in (
        "ClusterName",
        "SlurmctldHost",
        "ControlMachine",
        "BackupController",
        "SlurmUser",
        "SlurmdUser",
        "AuthType",
        "CredType",
        "StateSaveLocation",
        "SlurmdSpoolDir",
        "SlurmctldPidFile",
        "SlurmdPidFile",
        "SlurmctldLogFile",
        "SlurmdLogFile",
        "SlurmctldPort",
        "SlurmdPort",
        "SelectType",
        "SelectTypeParameters",
        "ProctrackType",
        "TaskPlugin",
        "GresTypes",
        "AccountingStorageType",
        "AccountingStorageHost",
        "AccountingStoragePort",
        "AccountingStorageTRES",
        "JobAcctGatherType",
        "NodeName",
        "PartitionName",
        "Include",
        "DownNodes",
        "NodeSet",
        "PlugStackConfig",
    )
)


class Slurm(Model):
    partitions: list[Partition] = setting(
        [], impact=Impact.RECONFIGURE, doc="Partitions; empty gives 'cpu' (default, all nodes) and 'gpu' if GPUs exist."
    )
    accounting: Accounting = setting(Accounting(), impact=Impact.RESTART, doc="Job accounting.")
    os_headroom_mib: MiB = setting(
        1024, impact=Impact.RESTART, doc="Memory left to the guest OS: RealMemory = VM memory - headroom."
    )
    options: dict[str, str] = setting(
        {}, impact=Impact.RECONFIGURE, doc="Extra slurm.conf keys merged over the defaults; owned keys are refused."
    )

    @field_validator("options")
    @classmethod
    def _not_owned(cls, options: dict[str, str]) -> dict[str, str]:
        owned = sorted(k for k in options if k.lower() in SLURM_OWNED_KEYS)
        if owned:
            raise ValueError(
                f"{', '.join(owned)} {'is' if len(owned) == 1 else 'are'} set by hyperscaler from the rest of the "
                "stack file and cannot be overridden; change the matching section (nodes, partitions, accounting)"
            )
        bad = sorted(k for k in options if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", k))
        if bad:
            raise ValueError(f"{', '.join(bad)}: slurm.conf keys are single words of letters and digits")
        return options

    cgroup_plugin: Literal["cgroup/v2", "cgroup/v1", "autodetect"] = setting(
        "cgroup/v2",
        impact=Impact.RESTART,
        doc="CgroupPlugin in cgroup.conf: cgroup/v2 for Debian 12 and other unified-hierarchy guests.",
    )
    drain_timeout_s: PositiveInt = setting(
        600, impact=Impact.IN_PLACE, doc="How long removing a node waits for its jobs after draining it."
    )
    canary: bool = setting(True, impact=Impact.IN_PLACE, doc="Run a job on every node after each update.")


class Beegfs(Model):
    enabled: bool = setting(True, impact=Impact.RESTART, doc="BeeGFS on the storage nodes, mounted on every node.")
    version: Literal["7.4", "8"] = setting("7.4", impact=Impact.RESTART, doc="BeeGFS major release.")
    mount_point: NonEmptyStr = setting("/mnt/beegfs", impact=Impact.RESTART, doc="Client mount point.")
    chunk_size: NonEmptyStr = setting("1m", impact=Impact.RECONFIGURE, doc="Default stripe chunk size.")
    stripe_targets: PositiveInt = setting(4, impact=Impact.RECONFIGURE, doc="Default number of targets per file.")
    mirror_metadata: bool = setting(False, impact=Impact.RECONFIGURE, doc="Buddy-mirror metadata (irreversible).")


class MigLayout(Model):
    group: Hostname = setting(impact=Impact.RECONFIGURE, doc="Compute group whose GPUs get this layout.")
    profiles: dict[NonEmptyStr, PositiveInt] = setting(
        impact=Impact.RECONFIGURE, doc="MIG profile -> instances per GPU, e.g. {'3g.40gb': 1, '1g.10gb': 4}."
    )


class Mig(Model):
    enabled: bool = setting(False, impact=Impact.RECONFIGURE, doc="Partition GPUs with MIG inside the guests.")
    layouts: list[MigLayout] = setting([], impact=Impact.RECONFIGURE, doc="One layout per compute group.")


class Containers(Model):
    enabled: bool = setting(False, impact=Impact.RECONFIGURE, doc="Enroot + Pyxis for srun --container-image.")
    runtime_path: NonEmptyStr = setting(
        "/run/enroot/user-$(id -u)", impact=Impact.RECONFIGURE, doc="ENROOT_RUNTIME_PATH."
    )
    cache_path: NonEmptyStr = setting(
        "/var/cache/enroot", impact=Impact.RECONFIGURE, doc="ENROOT_CACHE_PATH (image layers)."
    )


class Monitoring(Model):
    enabled: bool = setting(False, impact=Impact.RECONFIGURE, doc="Prometheus, node/DCGM exporters and Grafana.")
    retention_days: PositiveInt = setting(15, impact=Impact.RESTART, doc="Prometheus retention.")
    grafana_port: PositiveInt = setting(3000, impact=Impact.RESTART, doc="Grafana port on the controller.")
    scrape_interval_s: Count = setting(30, impact=Impact.RECONFIGURE, doc="Prometheus scrape interval.")
