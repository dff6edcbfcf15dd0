"""Node: one VM (root volume, cloud-init disk, protected data volumes, Domain) and its role flavours."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_libvirt as libvirt

from config.models import DirectBoot, Firmware
from config.topology import NodePlan

GIB = 1024**3


@dataclass(frozen=True)
class DataDisk:
    suffix: str  # child name is f"{node}-{suffix}"; keep it stable, it is the volume's identity
    size_gib: int


@dataclass(frozen=True)
class NodeArgs:
    plan: NodePlan
    domain_name: str
    domain_type: str
    cpu_mode: str
    firmware: Firmware
    direct_boot: DirectBoot | None
    pool_name: pulumi.Input[str]
    base_volume_id: pulumi.Input[str]
    management_network_id: pulumi.Input[str]
    interconnect_network_id: pulumi.Input[str]
    user_data: str
    meta_data: str
    network_config: str
    domain_xslt: str
    dhcp_reservation: bool = False  # register the node's address with libvirt's DHCP/DNS (nat/route networks)
    data_disks: tuple[DataDisk, ...] = field(default=())


@dataclass(frozen=True)
class Boot:
    """UEFI (OVMF code + a per-VM variable store), or a kernel and initrd straight from the host."""

    firmware: str | None = None
    nvram: libvirt.DomainNvramArgs | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdlines: list[dict[str, str]] | None = None


def boot_args(domain_name: str, firmware: Firmware, direct: DirectBoot | None) -> Boot:
    if direct is None:
        nvram = libvirt.DomainNvramArgs(
            file=f"/var/lib/libvirt/qemu/nvram/{domain_name}_VARS.fd", template=firmware.vars_template
        )
        return Boot(firmware=firmware.code, nvram=nvram)
    # The provider writes "_" entries as bare flags (and sorts the arguments: their order does not matter here).
    cmdlines = [{"_": arg} if "=" not in arg else dict([arg.split("=", 1)]) for arg in direct.cmdline.split()]
    return Boot(kernel=direct.kernel, initrd=direct.initrd, cmdlines=cmdlines)


class Node(pulumi.ComponentResource):
    """A VM. Subclasses only name the role; everything a VM needs is in NodeArgs."""

    TYPE = "hyperscaler:hpc:Node"

    domain_id: pulumi.Output[str]
    management_address: str
    hostname: str

    def __init__(self, name: str, args: NodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        plan = args.plan

        root = libvirt.Volume(
            f"{name}-disk",
            name=f"{args.domain_name}-root.qcow2",
            pool=args.pool_name,
            base_volume_id=args.base_volume_id,
            size=plan.disk_gib * GIB,
            format="qcow2",
            opts=child,
        )
        cloudinit = libvirt.CloudInitDisk(
            f"{name}-cloudinit",
            name=f"{args.domain_name}-cloudinit.iso",
            pool=args.pool_name,
            user_data=args.user_data,
            meta_data=args.meta_data,
            network_config=args.network_config,
            opts=child,
        )
        data = [
            libvirt.Volume(
                f"{name}-{disk.suffix}",
                name=f"{args.domain_name}-{disk.suffix}.qcow2",
                pool=args.pool_name,
                size=disk.size_gib * GIB,
                format="qcow2",
                # Data outlives the VM: a replaced Domain re-attaches it, and `pulumi destroy` keeps it.
                opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
            )
            for disk in args.data_disks
        ]

        interfaces = [
            libvirt.DomainNetworkInterfaceArgs(
                network_id=args.management_network_id,
                mac=plan.mgmt_mac,
                hostname=plan.name,
                addresses=[plan.mgmt_ip] if args.dhcp_reservation else None,
                wait_for_lease=False,  # addresses are static (cloud-init), never leased
            ),
            libvirt.DomainNetworkInterfaceArgs(
                network_id=args.interconnect_network_id, mac=plan.ic_mac, wait_for_lease=False
            ),
        ]
        boot = boot_args(args.domain_name, args.firmware, args.direct_boot)
        domain = libvirt.Domain(
            f"{name}-domain",
            name=args.domain_name,
            description=f"hyperscaler {plan.role.value} node {plan.name}",
            type=args.domain_type,
            machine="q35",
            arch="x86_64",
            vcpu=plan.vcpus,
            memory=plan.memory_mib,
            cpu=libvirt.DomainCpuArgs(mode=args.cpu_mode),
            firmware=boot.firmware,
            nvram=boot.nvram,
            kernel=boot.kernel,
            initrd=boot.initrd,
            cmdlines=boot.cmdlines,
            disks=[libvirt.DomainDiskArgs(volume_id=root.id), *(libvirt.DomainDiskArgs(volume_id=v.id) for v in data)],
            cloudinit=cloudinit.id,
            network_interfaces=interfaces,
            consoles=[libvirt.DomainConsoleArgs(type="pty", target_port="0", target_type="serial")],
            qemu_agent=False,
            autostart=True,
            running=True,
            xml=libvirt.DomainXmlArgs(xslt=args.domain_xslt),
            opts=child,
        )

        self.hostname = plan.name
        self.management_address = plan.mgmt_ip
        self.domain_id = domain.id
        self.register_outputs({"domain_id": self.domain_id, "management_address": self.management_address})


class Controller(Node):
    TYPE = "hyperscaler:hpc:Controller"


class ComputeNode(Node):
    TYPE = "hyperscaler:hpc:ComputeNode"


class StorageNode(Node):
    TYPE = "hyperscaler:hpc:StorageNode"
