"""Sections for the software pushed into the VMs: SLURM and MIG (containers and monitoring have their own
modules).

Changing anything here reconfigures the running cluster; it never replaces a VM.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from config.findings import brief
from config.impact import Impact, setting
from config.models.base import Model
from config.models.repository import AptRepository
from config.slurm_facts import KEY_RE, MAX_TIME, RESERVED_PARTITION_NAMES, TIME_FORMATS, TIME_RE, VALUE_RE, is_time
from config.types import Count, DebPackage, Hostname, MiB, Name, Seconds


def _number_as_text(value: Any) -> Any:
    """slurm.conf values are text; `KillWait: 30` in YAML is a number and means the same."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _slurm_key(key: str) -> str:
    if not KEY_RE.match(key):
        raise ValueError(f"{brief(key)} is not a slurm.conf key: keys are single words of letters and digits")
    return key


def _slurm_value(value: str) -> str:
    if not VALUE_RE.match(value):
        raise ValueError(
            f"{brief(value)} cannot go into slurm.conf: a value is one word without spaces, quotes, '#', backslashes, "
            "newlines or other control characters (anything after a space or newline would become another setting)"
        )
    return value


def _slurm_time(value: str) -> str:
    if not TIME_RE.match(value):
        raise ValueError(f"{brief(value)} is not a SLURM time: use {TIME_FORMATS}")
    if not is_time(value):
        raise ValueError(f"{brief(value)} is longer than SLURM can count: at most {MAX_TIME}, or INFINITE")
    return value


def _partition_name(value: str) -> str:
    if value.lower() in RESERVED_PARTITION_NAMES:
        raise ValueError(f"{value!r} is reserved: SLURM reads PartitionName=DEFAULT as defaults for other partitions")
    return value


SlurmKey = Annotated[str, AfterValidator(_slurm_key)]
SlurmValue = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_slurm_value)]
SlurmTime = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_slurm_value), AfterValidator(_slurm_time)]
PartitionName = Annotated[Hostname, AfterValidator(_partition_name)]


class Partition(Model):
    name: PartitionName = setting(impact=Impact.RECONFIGURE, doc="Partition name (not 'default').")
    groups: list[Hostname] = setting(
        [], impact=Impact.RECONFIGURE, doc="Compute groups in the partition; empty means every group."
    )
    default: bool = setting(False, impact=Impact.RECONFIGURE, doc="Jobs without -p land here.")
    max_time: SlurmTime = setting(
        "INFINITE", impact=Impact.RECONFIGURE, doc=f"MaxTime: {TIME_FORMATS}, e.g. 1-00:00:00."
    )
    options: dict[SlurmKey, SlurmValue] = setting(
        {},
        impact=Impact.RECONFIGURE,
        doc="Extra keys of the PartitionName line (slurm.conf(5)); Nodes, Default, MaxTime and State come from "
        "the fields above.",
    )


class Accounting(Model):
    enabled: bool = setting(True, impact=Impact.RESTART, doc="slurmdbd + MariaDB on the controller; sacct works.")
    database: str = setting(
        "slurm_acct_db", impact=Impact.RESTART, doc="MariaDB database name.", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
    )


class Slurm(Model):
    partitions: list[Partition] = setting(
        [], impact=Impact.RECONFIGURE, doc="Partitions; empty gives 'cpu' (default, all nodes) and 'gpu' if GPUs exist."
    )
    accounting: Accounting = setting(Accounting(), impact=Impact.RESTART, doc="Job accounting.")
    os_headroom_mib: MiB = setting(
        1024, impact=Impact.RESTART, doc="Memory left to the guest OS: RealMemory = VM memory - headroom."
    )
    options: dict[SlurmKey, SlurmValue] = setting(
        {},
        impact=Impact.RECONFIGURE,
        doc="Extra slurm.conf keys merged over the defaults (slurm.conf(5)); keys hyperscaler derives are refused.",
    )

    cgroup_plugin: Literal["cgroup/v2", "cgroup/v1", "autodetect"] = setting(
        "cgroup/v2",
        impact=Impact.RESTART,
        doc="CgroupPlugin in cgroup.conf: cgroup/v2 for Debian 12 and other unified-hierarchy guests.",
    )
    drain_timeout_s: Seconds = setting(
        600, impact=Impact.IN_PLACE, doc="How long removing a node waits for its jobs after draining it."
    )
    canary: bool = setting(True, impact=Impact.IN_PLACE, doc="Run a job on every node after each update.")


# A MIG profile as nvidia-smi and mig-parted spell it: "3g.40gb", "1g.10gb+me", "1g.24gb-me". Which
# profiles a GPU has is the catalog's (config/catalog.py); config/checks_mig.py checks a layout against it.
_PROFILE_RE = re.compile(r"^[1-8]g\.[0-9]{1,3}gb([+-][a-z]+(\.[a-z]+)?)?$")


def _mig_profile(value: str) -> str:
    if not _PROFILE_RE.match(value):
        raise ValueError(
            f"{brief(value)} is not a MIG profile name: profiles look like 3g.40gb, 1g.10gb+me or 1g.24gb-me "
            "(`nvidia-smi mig -lgip` lists a GPU's)"
        )
    return value


MigProfileName = Annotated[str, AfterValidator(_mig_profile)]
MigCounts = Annotated[dict[MigProfileName, Count], Field(min_length=1)]  # a count of 0 means none, as in mig-parted


class MigLayout(Model):
    group: Hostname = setting(impact=Impact.RESTART, doc="Compute group whose GPUs get this layout.")
    profiles: MigCounts | None = setting(
        None,
        impact=Impact.RESTART,
        doc="MIG profile -> instances per GPU, e.g. {3g.40gb: 1, 2g.20gb: 1, 1g.10gb: 2}; or name a layout.",
    )
    layout: Name | None = setting(None, impact=Impact.RESTART, doc="A layout of mig.named_layouts, by name.")

    @model_validator(mode="after")
    def _one_source(self) -> MigLayout:
        if (self.profiles is None) == (self.layout is None):
            raise ValueError("give either profiles (instances per GPU) or layout (a name in mig.named_layouts)")
        return self


# NVIDIA's CUDA repository for Debian 12 and its signing key 3bf863cc (the fingerprint is NVIDIA's published
# one). Whether it carries nvidia-mig-manager for Debian 12 was not verifiable here (docs/mig.md).
NVIDIA_CUDA_DEBIAN12 = AptRepository(
    name="nvidia-cuda",
    url="https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/",
    key_url="https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/3bf863cc.pub",
    key_fingerprint="EB693B3035CD5710E231E123A4B469963BF863CC",
)


class MigSoftware(Model):
    repository: AptRepository | None = setting(
        NVIDIA_CUDA_DEBIAN12,
        impact=Impact.RECONFIGURE,
        doc="Where the NVIDIA driver and the MIG manager come from (not Debian packages); null: the image "
        "carries nvidia-smi and nvidia-mig-parted.",
    )
    packages: list[DebPackage] = setting(
        ["cuda-drivers", "nvidia-mig-manager"],
        impact=Impact.RECONFIGURE,
        doc="Packages installed from it when nvidia-smi or nvidia-mig-parted is missing.",
        min_length=1,
    )


class Mig(Model):
    enabled: bool = setting(
        True,
        impact=Impact.RESTART,
        doc="false turns MIG off on the GPUs of the groups in `layouts` (whole GPUs in SLURM again).",
    )
    named_layouts: dict[Name, MigCounts] = setting(
        {},
        impact=Impact.RESTART,
        doc="Layouts by name (MIG profile -> instances per GPU), for several groups to reuse.",
    )
    layouts: list[MigLayout] = setting(
        [],
        impact=Impact.RESTART,
        doc="One layout per compute group: changing one drains the group's nodes, applies it and resumes them.",
    )
    software: MigSoftware = setting(MigSoftware(), impact=Impact.RECONFIGURE, doc="Driver and MIG manager source.")
