"""The VMs: controller, compute groups, storage nodes, plus the SSH access and base images they share."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from config.impact import Impact, setting
from config.models.base import Model
from config.models.storage import BeegfsSettings, MountPoint, NfsSettings, StorageBackend
from config.types import (
    AbsolutePath,
    Count,
    EndpointUrl,
    GiB,
    Hostname,
    ImageSource,
    MiB,
    Name,
    PciAddress,
    PositiveInt,
    S3Profile,
    S3Region,
    Seconds,
    Sha256,
    SshPublicKey,
)

# KVM's limit on vCPUs per guest (KVM_MAX_VCPUS) on the kernels Debian ships.
VCpus = Annotated[int, Field(strict=True, gt=0, le=1024)]


class Ssh(Model):
    user: Hostname = setting(
        "hpcadmin", impact=Impact.REPLACE_VM, doc="Admin user created on every node, with passwordless sudo."
    )
    public_keys: list[SshPublicKey] = setting(
        impact=Impact.REPLACE_VM, doc="Public keys allowed to log in as the admin user.", min_length=1
    )
    connect_timeout_s: Seconds = setting(
        90, impact=Impact.IN_PLACE, doc="How long configuration steps retry SSH while a VM boots."
    )


class S3Options(Model):
    endpoint_url: EndpointUrl | None = setting(
        None,
        impact=Impact.IN_PLACE,
        doc="An S3-compatible endpoint (MinIO, Ceph RGW...), e.g. https://minio.example.com:9000; default: AWS's.",
    )
    region: S3Region | None = setting(
        None, impact=Impact.IN_PLACE, doc="The bucket's region; default: the AWS configuration's (AWS_REGION...)."
    )
    profile: S3Profile | None = setting(
        None,
        impact=Impact.IN_PLACE,
        doc="AWS profile to take credentials from; default: the environment, then the default profile, or the "
        "`hyperscaler:s3AccessKeyId`/`s3SecretAccessKey` secrets (docs/images.md).",
    )


class BaseImage(Model):
    source: ImageSource = setting(
        impact=Impact.REPLACE_VM,
        doc="Where the image comes from: an absolute path on the machine running pulumi, an https:// URL or "
        "s3://bucket/key. Fetched and checked during `pulumi up` (never preview) by `hyperscaler image fetch`. With a "
        "sha256, another copy of the same image changes nothing on the cluster.",
    )
    sha256: Sha256 | None = setting(
        None,
        impact=Impact.REPLACE_VM,
        doc="The image file's sha256 (`sha256sum FILE`); required unless a local source is `trusted`. A changed "
        "checksum replaces the base volume, and the root disks and VMs booted from it.",
    )
    trusted: bool = setting(
        False,
        impact=Impact.REPLACE_VM,
        doc="A local file you vouch for, used without a checksum (a URL or S3 object is never trusted).",
        strict=True,
    )
    format: Literal["qcow2", "raw"] = setting("qcow2", impact=Impact.REPLACE_VM, doc="Image format.")
    virtual_size_gib: GiB | None = setting(
        None,
        impact=Impact.IN_PLACE,
        doc="The image's virtual disk size (`qemu-img info`); a root disk smaller than it is refused. Read from "
        "the file itself for a local image.",
    )
    s3: S3Options | None = setting(None, impact=Impact.IN_PLACE, doc="Where and how to reach an s3:// source.")
    manifest: AbsolutePath | None = setting(
        None,
        impact=Impact.IN_PLACE,
        doc="A manifest written by `make images`: source, sha256, format and size come from its entry `entry` "
        "(default: this image's name) each time the stack is loaded (docs/images.md).",
    )
    entry: Name | None = setting(None, impact=Impact.IN_PLACE, doc="The manifest's image to use.")

    @property
    def is_local(self) -> bool:
        return self.source.startswith("/")


class VmTopology(Model):
    sockets: PositiveInt = setting(1, impact=Impact.REPLACE_VM, doc="Guest sockets.")
    cores: PositiveInt = setting(impact=Impact.REPLACE_VM, doc="Guest cores per socket.")
    threads: PositiveInt = setting(1, impact=Impact.REPLACE_VM, doc="Guest threads per core.")

    @property
    def vcpus(self) -> int:
        return self.sockets * self.cores * self.threads


class VmSpec(Model):
    host: Hostname | None = setting(
        None, impact=Impact.REPLACE_VM, doc="Host the VM runs on; defaults to the first host."
    )
    vcpus: VCpus
    memory_mib: MiB
    disk_gib: GiB = setting(20, impact=Impact.REPLACE_VM, doc="Root disk size (copy-on-write over the base image).")
    image: Name = setting("debian-12", impact=Impact.REPLACE_VM, doc="Key of the base image in `images`.")
    topology: VmTopology | None = setting(
        None,
        impact=Impact.REPLACE_VM,
        doc="Guest CPU topology (also what SLURM is told); defaults to 1 socket x vcpus cores x 1 thread.",
    )

    @model_validator(mode="after")
    def _topology_matches(self) -> VmSpec:
        if self.topology is not None and self.topology.vcpus != self.vcpus:
            raise ValueError(
                f"topology gives {self.topology.sockets}x{self.topology.cores}x{self.topology.threads}="
                f"{self.topology.vcpus} vCPUs but vcpus is {self.vcpus}; make them equal"
            )
        return self

    @property
    def guest_topology(self) -> VmTopology:
        return self.topology or VmTopology(sockets=1, cores=self.vcpus, threads=1)


class Controller(VmSpec):
    name: Hostname = setting("controller", impact=Impact.REPLACE_VM, doc="Hostname of the SLURM controller.")
    vcpus: VCpus = setting(2, impact=Impact.REPLACE_VM, doc="vCPUs.")
    memory_mib: MiB = setting(4096, impact=Impact.REPLACE_VM, doc="Memory.")
    state_disk_gib: GiB = setting(
        10,
        impact=Impact.DATA_AT_RISK,
        doc="Protected volume for SLURM's StateSaveLocation and the accounting database.",
    )
    address_offset: PositiveInt = setting(
        10, impact=Impact.REPLACE_VM, doc="Host offset of the controller's addresses in both subnets."
    )


class ComputeGroup(VmSpec):
    name: Hostname = setting(impact=Impact.REPLACE_VM, doc="Group name; nodes are named <name>-01, <name>-02...")
    count: Count = setting(
        impact=Impact.SCALE,
        doc="Number of nodes: growing creates nodes, shrinking drains the last ones and removes them.",
    )
    vcpus: VCpus = setting(impact=Impact.REPLACE_VM, doc="vCPUs per node.")
    memory_mib: MiB = setting(impact=Impact.REPLACE_VM, doc="Memory per node.")
    gpus_per_node: Count = setting(0, impact=Impact.REPLACE_VM, doc="GPUs passed through to each node.")
    gpus: list[PciAddress] = setting(
        [],
        impact=Impact.REPLACE_VM,
        doc="Explicit GPU addresses in node order (count x gpus_per_node); empty picks free GPUs of the host.",
    )
    address_offset: PositiveInt | None = setting(
        None,
        impact=Impact.REPLACE_VM,
        doc="Host offset of the first node's addresses; defaults to right after the previous group (from 100).",
    )
    features: list[Hostname] = setting([], impact=Impact.RECONFIGURE, doc="Extra SLURM node features.")

    @model_validator(mode="after")
    def _gpu_list_length(self) -> ComputeGroup:
        if self.gpus and len(self.gpus) != self.count * self.gpus_per_node:
            raise ValueError(
                f"gpus lists {len(self.gpus)} addresses but count x gpus_per_node = "
                f"{self.count} x {self.gpus_per_node} = {self.count * self.gpus_per_node}"
            )
        return self


class StorageGroup(VmSpec):
    name: Hostname = setting("storage", impact=Impact.REPLACE_VM, doc="Nodes are named <name>-01, <name>-02...")
    count: Count = setting(
        1,
        impact=Impact.SCALE,
        doc="Number of storage nodes: growing creates nodes; shrinking is refused while their data is protected.",
    )
    vcpus: VCpus = setting(2, impact=Impact.REPLACE_VM, doc="vCPUs per node.")
    memory_mib: MiB = setting(2048, impact=Impact.REPLACE_VM, doc="Memory per node.")
    data_disks_gib: list[GiB] = setting(
        [50],
        impact=Impact.DATA_AT_RISK,
        doc="Protected data volumes per node: BeeGFS storage targets, one each; NFS exports the first.",
        min_length=1,
        max_length=99,  # BeeGFS target ids are <node>*100 + <volume number> (docs/storage.md)
    )
    address_offset: PositiveInt = setting(
        20, impact=Impact.REPLACE_VM, doc="Host offset of the first storage node's addresses."
    )
    backend: StorageBackend = setting(
        "beegfs",
        impact=Impact.DATA_AT_RISK,
        doc="The shared file system: beegfs (striped over the storage nodes) or nfs (one storage node's first "
        "data volume). Switching moves no data.",
    )
    mount_point: MountPoint = setting(
        "/shared", impact=Impact.RESTART, doc="Where the controller and every compute node mount the file system."
    )
    nfs: NfsSettings = setting(NfsSettings(), impact=Impact.RECONFIGURE, doc="NFS settings (backend nfs).")
    beegfs: BeegfsSettings = setting(BeegfsSettings(), impact=Impact.RESTART, doc="BeeGFS settings (backend beegfs).")


ImageMap = Annotated[dict[Name, BaseImage], Field(min_length=1)]
__all__ = [
    "BaseImage",
    "ComputeGroup",
    "Controller",
    "ImageMap",
    "S3Options",
    "Ssh",
    "StorageGroup",
    "VmSpec",
    "VmTopology",
]
