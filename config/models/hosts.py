"""Hypervisor hosts: their CPUs, NUMA layout, memory, storage pool and GPUs."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, Strict, model_validator

from config.findings import brief
from config.impact import Impact, setting
from config.models.base import Model
from config.types import Count, CpuSet, Hostname, MiB, NonEmptyStr, PciAddress, SshPublicKey, parse_cpuset

# libvirt connection URIs for the QEMU driver (libvirt's uri.html): driver[+transport]://[user@][host][:port]/
# system|session[?params]. A bare hostname is a common mistake; it is not a URI.
_LIBVIRT_URI_RE = re.compile(
    r"^qemu(\+(ssh|libssh|libssh2|tcp|tls|unix|ext))?://([A-Za-z0-9._~%-]+@)?([A-Za-z0-9.-]*|\[[0-9a-fA-F:.]+\])"
    r"(:\d{1,5})?/(system|session)(\?[^\s#]*)?$"
)


def _libvirt_uri(value: str) -> str:
    if not _LIBVIRT_URI_RE.match(value):
        raise ValueError(
            f"{brief(value)} is not a libvirt URI for QEMU: use qemu:///system for this machine or "
            "qemu+ssh://root@host2/system for another one"
        )
    if "://" in value and value.split("://", 1)[1].startswith("/") and "+" in value.split("://", 1)[0]:
        transport = value.split("://", 1)[0].split("+", 1)[1]
        if transport in ("ssh", "libssh", "libssh2", "tcp", "tls"):
            raise ValueError(
                f"{brief(value)} names the {transport} transport but no host: e.g. qemu+{transport}://host2/system"
            )
    return value


LibvirtUri = Annotated[str, AfterValidator(_libvirt_uri)]


# Bounds of real x86 servers with room to spare; beyond them a value is a typo, and the placement
# planner would otherwise walk billions of CPUs.
Sockets = Annotated[int, Strict(), Field(gt=0, le=16)]
CoresPerSocket = Annotated[int, Strict(), Field(gt=0, le=1024)]
ThreadsPerCore = Annotated[int, Strict(), Field(gt=0, le=8)]


class CpuTopology(Model):
    sockets: Sockets = setting(1, impact=Impact.REPLACE_VM, doc="CPU sockets on the host.")
    cores_per_socket: CoresPerSocket = setting(impact=Impact.REPLACE_VM, doc="Physical cores per socket.")
    threads_per_core: ThreadsPerCore = setting(
        1, impact=Impact.REPLACE_VM, doc="Hardware threads per core (2 with SMT)."
    )

    @model_validator(mode="after")
    def _linux_limit(self) -> CpuTopology:
        if self.logical_cpus > 8192:
            raise ValueError(
                f"{self.sockets} x {self.cores_per_socket} x {self.threads_per_core} = {self.logical_cpus} CPUs; "
                "Linux supports at most 8192"
            )
        return self

    @property
    def logical_cpus(self) -> int:
        return self.sockets * self.cores_per_socket * self.threads_per_core


class NumaNode(Model):
    id: Count = setting(impact=Impact.REPLACE_VM, doc="NUMA node number, as in /sys/devices/system/node/nodeN.")
    cpus: CpuSet = setting(impact=Impact.REPLACE_VM, doc="Host CPUs of this node, as a cpulist (e.g. '0-15,32-47').")
    memory_mib: MiB = setting(impact=Impact.REPLACE_VM, doc="Memory attached to this node.")

    @property
    def cpu_list(self) -> list[int]:
        return parse_cpuset(self.cpus)


class Hugepages(Model):
    size_kib: Literal[2048, 1048576] = setting(
        1048576, impact=Impact.REPLACE_VM, doc="Hugepage size the host reserved: 2048 (2 MiB) or 1048576 (1 GiB)."
    )
    count: Count = setting(0, impact=Impact.REPLACE_VM, doc="Free hugepages of that size on the host; 0 means none.")

    @property
    def total_mib(self) -> int:
        return self.size_kib * self.count // 1024


class HostReserve(Model):
    cpus: CpuSet = setting(
        "0-1", impact=Impact.REPLACE_VM, doc="Host CPUs kept for the host and QEMU emulator threads."
    )
    memory_mib: MiB = setting(4096, impact=Impact.IN_PLACE, doc="Memory kept for the host; VMs must fit in the rest.")


class StoragePool(Model):
    name: NonEmptyStr = setting("hyperscaler", impact=Impact.DATA_AT_RISK, doc="libvirt storage pool for all volumes.")
    path: NonEmptyStr = setting(
        "/var/lib/libvirt/images/hyperscaler", impact=Impact.DATA_AT_RISK, doc="Directory backing the pool."
    )


class Firmware(Model):
    code: NonEmptyStr = setting(
        "/usr/share/OVMF/OVMF_CODE_4M.fd", impact=Impact.REPLACE_VM, doc="UEFI code file on the host (Debian: ovmf)."
    )
    vars_template: NonEmptyStr = setting(
        "/usr/share/OVMF/OVMF_VARS_4M.fd", impact=Impact.REPLACE_VM, doc="UEFI variable store template on the host."
    )


class DirectBoot(Model):
    """Boot guests from a kernel and initrd on the host instead of UEFI firmware and the image's bootloader."""

    kernel: NonEmptyStr = setting(impact=Impact.REPLACE_VM, doc="Path of the guest kernel on the host.")
    initrd: NonEmptyStr | None = setting(None, impact=Impact.REPLACE_VM, doc="Path of the initrd on the host.")
    cmdline: str = setting("root=/dev/vda rw console=ttyS0", impact=Impact.REPLACE_VM, doc="Kernel command line.")


class PciFunction(Model):
    """Another device in a GPU's IOMMU group, as `hyperscaler inventory` reports it."""

    address: PciAddress = setting(impact=Impact.REPLACE_VM, doc="PCI address of the function.")
    class_code: str = setting(
        impact=Impact.REPLACE_VM,
        doc="PCI class as 4 hex digits from sysfs (0403 audio, 0c03 USB, 0c80 UCSI, 0604 bridge, 0106 SATA...).",
        pattern=r"^[0-9a-f]{4}$",
    )
    description: str = setting("", impact=Impact.IN_PLACE, doc="Free text for humans.")


class Gpu(Model):
    address: PciAddress = setting(impact=Impact.REPLACE_VM, doc="PCI address of the GPU's function 0.")
    model: NonEmptyStr = setting(
        impact=Impact.REPLACE_VM, doc="GPU model from the catalog (config/catalog.py), e.g. h100-80gb, rtx-4090."
    )
    iommu_group: Count | None = setting(
        None,
        impact=Impact.REPLACE_VM,
        doc="IOMMU group number of the GPU; null when the host has no IOMMU (then it cannot be passed through).",
    )
    numa_node: Count = setting(0, impact=Impact.REPLACE_VM, doc="NUMA node the GPU is attached to.")
    group_devices: list[PciFunction] = setting(
        [], impact=Impact.REPLACE_VM, doc="Every other device in the GPU's IOMMU group (audio, USB, bridges...)."
    )
    kvm_hidden: bool = setting(
        False, impact=Impact.REPLACE_VM, doc="Hide KVM from the guest; only for GeForce cards with pre-R465 drivers."
    )


class Host(Model):
    name: Hostname = setting(impact=Impact.REPLACE_VM, doc="Short name of the hypervisor host.")
    uri: LibvirtUri = setting(
        "qemu:///system",
        impact=Impact.REPLACE_VM,
        doc="libvirt connection URI, e.g. qemu:///system or qemu+ssh://root@host2/system; required on every host "
        "of a multi-host stack.",
    )
    ssh_host_key: SshPublicKey | None = setting(
        None,
        impact=Impact.IN_PLACE,
        doc="The host's SSH host public key (ssh-keyscan -t ed25519 HOST), needed when configuration steps reach "
        "nodes through this host as an SSH jump host: connections to a host whose key is unknown are refused.",
    )
    domain_type: Literal["kvm", "qemu"] = setting(
        "kvm", impact=Impact.REPLACE_VM, doc="kvm on real hardware; qemu (TCG emulation) only for nested test rigs."
    )
    cpu: CpuTopology = setting(impact=Impact.REPLACE_VM, doc="The host's CPU topology.")
    memory_mib: MiB = setting(impact=Impact.IN_PLACE, doc="Total host memory.")
    numa_nodes: list[NumaNode] = setting(
        [], impact=Impact.REPLACE_VM, doc="NUMA nodes; empty means one node 0 holding every CPU and all memory."
    )
    hugepages: Hugepages = setting(Hugepages(), impact=Impact.REPLACE_VM, doc="Hugepages the host has reserved.")
    reserve: HostReserve = setting(HostReserve(), impact=Impact.IN_PLACE, doc="What stays with the host itself.")
    pool: StoragePool = setting(StoragePool(), impact=Impact.DATA_AT_RISK, doc="Where volumes live on this host.")
    firmware: Firmware = setting(Firmware(), impact=Impact.REPLACE_VM, doc="UEFI firmware files on this host.")
    pinning: bool = setting(
        True,
        impact=Impact.REPLACE_VM,
        doc="Pin every vCPU to a host CPU of its own (no overcommit). false lets vCPUs float and overcommit "
        "the host: for TCG test rigs, never with GPUs.",
    )
    direct_boot: DirectBoot | None = setting(
        None,
        impact=Impact.REPLACE_VM,
        doc="Direct kernel boot instead of UEFI, for test rigs; a real workstation leaves it empty.",
    )
    gpus: list[Gpu] = setting([], impact=Impact.REPLACE_VM, doc="GPUs on this host that may be passed through.")

    @model_validator(mode="after")
    def _default_numa(self) -> Host:
        if not self.numa_nodes:
            whole = NumaNode(id=0, cpus=f"0-{self.cpu.logical_cpus - 1}", memory_mib=self.memory_mib)
            object.__setattr__(self, "numa_nodes", [whole])
        return self

    @property
    def ssh_login(self) -> str | None:
        """user@host[:port] from a remote libvirt URI (qemu+ssh://root@hv2/system); None for a local URI."""
        parts = urlsplit(self.uri)
        if not parts.scheme.endswith("+ssh") or not parts.hostname:
            return None
        user = parts.username or "root"
        port = f":{parts.port}" if parts.port else ""
        return f"{user}@{parts.hostname}{port}"

    @property
    def cpu_list(self) -> list[int]:
        return list(range(self.cpu.logical_cpus))

    @property
    def reserved_cpus(self) -> list[int]:
        return parse_cpuset(self.reserve.cpus)

    @property
    def cpu_mode(self) -> str:
        """host-passthrough under KVM; TCG cannot pass a host CPU through, `maximum` emulates all it can."""
        return "host-passthrough" if self.domain_type == "kvm" else "maximum"

    @property
    def usable_cpus(self) -> int:
        return self.cpu.logical_cpus - len(self.reserved_cpus)

    @property
    def usable_memory_mib(self) -> int:
        return self.memory_mib - self.reserve.memory_mib

    def gpu(self, address: str) -> Gpu | None:
        return next((g for g in self.gpus if g.address == address), None)
