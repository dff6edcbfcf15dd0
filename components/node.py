"""Node: one VM (root volume, cloud-init disk, protected data volumes, Domain) and its role flavours."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pulumi
import pulumi_libvirt as libvirt
import pulumi_random as random

from components.identity import token, with_aliases
from components.provider_facts import fixed_name_options
from config.models import DirectBoot, Firmware
from config.topology import NodePlan
from render.hostkeys import SEED_BYTES, HostKey, host_key_from_base64

GIB = 1024**3
DOMAIN = "libvirt:index/domain:Domain"
VOLUME = "libvirt:index/volume:Volume"
CLOUDINIT = "libvirt:index/cloudInitDisk:CloudInitDisk"


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
    user_data: Callable[[HostKey], str]  # rendered inside an apply once the host key exists
    meta_data: str
    network_config: str
    domain_xslt: str
    dhcp_reservation: bool = False  # register the node's address with libvirt's DHCP/DNS (nat/route networks)
    data_disks: tuple[DataDisk, ...] = field(default=())
    # The base image, by name and checksum: in the Domain's description, whose change replaces the Domain, so
    # a VM whose root disk moves to another image is created again and configured from scratch.
    image_label: str = ""


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


def as_secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """Output.secret, typed as it behaves (the SDK's annotation loses the value's type). Random bytes and
    passwords are secret in the real provider's state; this keeps them secret under mocks too."""
    return pulumi.Output.secret(value)


class Node(pulumi.ComponentResource):
    """A VM. Subclasses only name the role; everything a VM needs is in NodeArgs.

    Its name-bearing children (root volume, cloud-init disk, domain) are deleted before they are
    replaced: libvirt refuses a second domain or volume of the same name, so create-before-delete would
    fail half-way. Commands on the node carry the domain id in their triggers (components/remote.py), so a
    replaced VM is drained first and configured again from scratch."""

    KIND = "Node"

    domain: libvirt.Domain
    domain_id: pulumi.Output[str]
    host_key: pulumi.Output[str]  # the VM's SSH host public key, "ssh-ed25519 AAAA..."
    management_address: str
    hostname: str

    def __init__(self, name: str, args: NodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token(self.KIND), name, None, with_aliases(self.KIND, opts))
        child = pulumi.ResourceOptions(parent=self)
        plan = args.plan

        # Generated once and kept in state (secret): the VM keeps its host key when it is replaced.
        seed = random.RandomBytes(f"{name}-host-key", length=SEED_BYTES, opts=child)
        host_key = as_secret(seed.base64).apply(lambda b: host_key_from_base64(b, f"root@{plan.name}"))

        root = libvirt.Volume(
            f"{name}-disk",
            name=f"{args.domain_name}-root.qcow2",
            pool=args.pool_name,
            base_volume_id=args.base_volume_id,
            size=plan.disk_gib * GIB,
            format="qcow2",
            opts=fixed_name_options(VOLUME, self),
        )
        cloudinit = libvirt.CloudInitDisk(
            f"{name}-cloudinit",
            name=f"{args.domain_name}-cloudinit.iso",
            pool=args.pool_name,
            user_data=host_key.apply(args.user_data),
            meta_data=args.meta_data,
            network_config=args.network_config,
            opts=fixed_name_options(CLOUDINIT, self),
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
            description=f"hyperscaler {plan.role.value} node {plan.name}"
            + (f" on image {args.image_label}" if args.image_label else ""),
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
            opts=fixed_name_options(DOMAIN, self),
        )

        self.hostname = plan.name
        self.management_address = plan.mgmt_ip
        self.domain = domain
        self.domain_id = domain.id
        # A public key is no secret: unwrapped so it can be shown in outputs and known_hosts.
        self.host_key = pulumi.Output.unsecret(host_key.apply(lambda k: k.public_key))
        self.register_outputs(
            {"domain_id": self.domain_id, "management_address": self.management_address, "host_key": self.host_key}
        )


class Controller(Node):
    KIND = "Controller"


class ComputeNode(Node):
    KIND = "ComputeNode"


class StorageNode(Node):
    KIND = "StorageNode"
