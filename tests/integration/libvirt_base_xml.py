"""The domain XML that terraform-provider-libvirt v0.8.1 (bridged by pulumi-libvirt 0.5.4) generates
*before* it applies ``xml.xslt``: the input our XSLT stylesheets will be run against.

What was checked, and where (dmacvicar/terraform-provider-libvirt, v0.8.x line, go-libvirt based; the
v0.8.1 tag's own commit could not be pinned in the code index, but these paths match before and after):

* ``libvirt/resource_libvirt_domain.go`` ``resourceLibvirtDomainCreate``: builds a ``libvirtxml.Domain``,
  serialises it with ``xmlMarshallIndented`` (Go ``encoding/xml``, ``Indent("  ", "    ")``: every line,
  the first included, starts with two spaces, nesting adds four; empty elements are written as
  ``<x></x>``; attributes use double quotes; no XML declaration), then ``transformResourceXML`` runs
  ``xsltproc --nomkdir --nonet --nowrite <xslt> <xml>`` (its ``transformXML`` helper), then
  ``DomainDefineXML`` *without* the validate flag, then ``DomainSetAutostart`` (autostart is an API call,
  not XML) and ``DomainCreate``.
  After ``newDomainDefForConnection`` it overwrites ``os/type/@arch`` with ``d.Get("arch")`` and
  ``devices/emulator`` with ``d.Get("emulator")``; both are Optional+Computed and empty at create when
  not set, so neither appears (libvirt fills them in: arch x86_64, /usr/bin/qemu-system-x86_64).
  ``vcpu`` is rebuilt without ``placement``; ``memory`` is ``unit="MiB"``; ``type`` defaults to kvm.
* ``libvirt/domain_def.go`` ``newDomainDef``: ``features`` = pae, acpi, apic (in that order, from the
  ``libvirtxml.DomainFeatureList`` field order); a qemu-ga ``channel`` (unix, virtio,
  org.qemu.guest_agent.0) and a virtio ``rng`` backed by ``$TF_LIBVIRT_RNG_DEV`` or /dev/urandom are
  always added. ``newDomainDefForConnection`` maps ``machine`` to its *canonical* name from the host
  capabilities (``q35`` -> ``pc-q35-7.2`` on QEMU 7.2), via ``getCanonicalMachineName``.
* ``libvirt/domain.go``: ``setFirmware`` -> ``<loader readonly="yes" secure="no" type="pflash">`` and
  ``<nvram template=...>file</nvram>``; ``setDisks`` + ``libvirt/disk_def.go`` ``newDefDisk`` -> a
  ``volume_id`` disk becomes ``<disk type="volume" device="disk">`` with ``source pool= volume=`` (not a
  file path), target ``vd<letter>`` bus virtio, driver qemu + the volume's format; ``newDiskForCloudInit``
  -> cloud-init ISO is ``<disk type="file" device="cdrom">``, driver raw, **target hdd bus ide**, serial
  ``cloudinit`` (libvirt rejects IDE on q35: upstream issues #667/#885/#1137 (v0.8.1)/#1193, so our XSLT
  must move it to sata); ``setNetworkInterfaces`` -> ``<interface type="network">`` with the MAC
  **upper-cased**, ``source network=<name>`` (a ``network_id`` is resolved to its name), model virtio;
  ``setConsoles`` -> a pty console without ``source_path`` has **no type attribute** (libvirt's parser
  defaults to pty, but the RelaxNG schema rejects it); ``setGraphics``/``setVideo`` add nothing unless
  ``graphics``/``video`` blocks are given (the "spice" default applies only inside such a block).
* libvirt-go-xml ``domain.go``: element order (``Domain``, ``DomainOS``, ``DomainDeviceList`` field
  order: disks, interfaces, consoles, channels, rngs), ``DomainConsole``/``DomainChannel`` marshalling
  (type from the source; an empty unix source writes no ``<source>`` element).

Direct kernel boot (checked in the same files): ``resourceLibvirtDomainCreate`` copies ``kernel``,
``initrd``, ``arch`` and ``description`` verbatim; ``setCmdlineArgs`` turns every map of the ``cmdline``
list into ``k=v`` (key ``_``: the bare value), then **sorts all of them** (``sort.Strings``) and joins them
with one space, so the order the stack gives is lost (``root=/dev/vda rw console=ttyS0`` is written as
``console=ttyS0 root=/dev/vda rw``). ``setFirmware`` writes nothing when ``firmware`` is unset, so a
direct-boot domain has no loader/nvram. libvirt-go-xml's ``DomainOS`` order: type, loader, nvram, kernel,
initrd, cmdline; ``DomainOSType``: arch before machine; ``description`` follows ``name``.

Networks (``libvirt/resource_libvirt_network.go`` ``resourceLibvirtNetworkCreate``, ``network.go``,
``network_def.go`` ``newNetworkDef``, ``network_dns.go``; libvirt-go-xml ``Network`` field order:
name, forward, bridge, mtu, domain, dns, ip): see ``provider_network_xml``.

Checked against libvirt 9.0.0 here (tests/integration/test_libvirt_harness.py): the output is
well-formed, fails ``virt-xml-validate`` only for the untyped console, and ``virsh define`` (no
validation, as the provider calls it) fails on q35 only because of the IDE cdrom.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# What the provider's canonicalisation turns machine="q35" into on this host's QEMU 7.2.
Q35_CANONICAL = "pc-q35-7.2"
# TF_LIBVIRT_RNG_DEV unset -> the provider's default.
DEFAULT_RNG_DEVICE = "/dev/urandom"

# Go's xml.Encoder.Indent(prefix, indent) as called by xmlMarshallIndented.
_PREFIX = "  "
_INDENT = "    "


@dataclass
class _El:
    tag: str
    attrs: list[tuple[str, str]] = field(default_factory=list)
    children: list[_El] = field(default_factory=list)
    text: str | None = None


# Go's xml.EscapeText, used for both text and attribute values.
_GO_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"}
_GO_ESCAPES.update({"\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"})


def _escape(value: str) -> str:
    return "".join(_GO_ESCAPES.get(ch, ch) for ch in value)


def _render(el: _El, depth: int, lines: list[str]) -> None:
    # Go writes prefix + depth*indent before each start tag; a text-only or empty element closes on
    # the same line, an element with children closes on its own line.
    pad = _PREFIX + _INDENT * depth
    attrs = "".join(f' {k}="{_escape(v)}"' for k, v in el.attrs)
    start = f"{pad}<{el.tag}{attrs}>"
    if not el.children:
        lines.append(f"{start}{_escape(el.text or '')}</{el.tag}>")
        return
    lines.append(start)
    for child in el.children:
        _render(child, depth + 1, lines)
    lines.append(f"{pad}</{el.tag}>")


def _disk_letter(index: int) -> str:
    # diskLetterForIndex: a..z, then aa, ab, ...
    letters = "abcdefghijklmnopqrstuvwxyz"
    q, r = divmod(index, len(letters))
    return letters[r] if q == 0 else _disk_letter(q - 1) + letters[r]


def provider_cmdline(cmdlines: Sequence[Mapping[str, str]]) -> str:
    """The kernel command line setCmdlineArgs builds: every ``k=v`` (``_``: bare value), sorted, joined."""
    args = [str(v) if k == "_" else f"{k}={v}" for entry in cmdlines for k, v in entry.items()]
    return " ".join(sorted(args))


def provider_domain_xml(
    *,
    name: str,
    domain_type: str,
    vcpu: int,
    memory_mib: int,
    mac_addresses: Sequence[str],
    network_names: Sequence[str],
    disk_paths: Sequence[str],
    cloudinit_iso: str,
    firmware: str,
    nvram_file: str,
    nvram_template: str,
    machine: str = Q35_CANONICAL,
    disk_pool: str = "default",
    disk_format: str = "qcow2",
    cpu_mode: str = "host-passthrough",
    rng_device: str = DEFAULT_RNG_DEVICE,
    arch: str = "",
    description: str = "",
    kernel: str = "",
    initrd: str = "",
    cmdlines: Sequence[Mapping[str, str]] = (),
) -> str:
    """Return the domain XML the provider hands to xsltproc, for a Domain declared with name, type,
    machine, vcpu, memory, cpu.mode, firmware + nvram(file, template), one ``volume_id`` disk per entry
    of ``disk_paths`` (volume name = basename, pool = ``disk_pool``), a CloudInitDisk, one
    network_interface per (network name, mac), one pty console (target_type serial, port 0) and autostart.

    ``machine`` must already be canonical (the provider resolves ``q35`` through the host
    capabilities); ``cloudinit_iso``/``firmware`` may be empty to leave those parts out. ``arch``,
    ``description``, ``kernel``, ``initrd`` and ``cmdlines`` (the Domain's ``cmdlines`` list of maps) are
    written only when given, as the provider does for empty values.
    """
    if len(mac_addresses) != len(network_names):
        raise ValueError("need exactly one MAC address per network interface")

    type_attrs = [("arch", arch)] if arch else []
    os_el = _El("os", children=[_El("type", [*type_attrs, ("machine", machine)], text="hvm")])
    if firmware:
        loader_attrs = [("readonly", "yes"), ("secure", "no"), ("type", "pflash")]
        os_el.children.append(_El("loader", loader_attrs, text=firmware))
        if nvram_file or nvram_template:
            nvram_attrs = [("template", nvram_template)] if nvram_template else []
            os_el.children.append(_El("nvram", nvram_attrs, text=nvram_file))
    for tag, value in (("kernel", kernel), ("initrd", initrd), ("cmdline", provider_cmdline(cmdlines))):
        if value:  # omitempty
            os_el.children.append(_El(tag, text=value))

    devices = _El("devices")
    for i, path in enumerate(disk_paths):
        devices.children.append(
            _El(
                "disk",
                [("type", "volume"), ("device", "disk")],
                [
                    _El("driver", [("name", "qemu"), ("type", disk_format)]),
                    _El("source", [("pool", disk_pool), ("volume", os.path.basename(path))]),
                    _El("target", [("dev", f"vd{_disk_letter(i)}"), ("bus", "virtio")]),
                ],
            )
        )
    if cloudinit_iso:
        devices.children.append(
            _El(
                "disk",
                [("type", "file"), ("device", "cdrom")],
                [
                    _El("driver", [("name", "qemu"), ("type", "raw")]),
                    _El("source", [("file", cloudinit_iso)]),
                    # Hard-coded by newDiskForCloudInit, whatever the machine type.
                    _El("target", [("dev", "hdd"), ("bus", "ide")]),
                    _El("serial", text="cloudinit"),
                ],
            )
        )
    for mac, network in zip(mac_addresses, network_names, strict=True):
        devices.children.append(
            _El(
                "interface",
                [("type", "network")],
                [
                    _El("mac", [("address", mac.upper())]),
                    _El("source", [("network", network)]),
                    _El("model", [("type", "virtio")]),
                ],
            )
        )
    devices.children += [
        _El("console", children=[_El("target", [("type", "serial"), ("port", "0")])]),
        _El(
            "channel",
            [("type", "unix")],
            [_El("target", [("type", "virtio"), ("name", "org.qemu.guest_agent.0")])],
        ),
        _El("rng", [("model", "virtio")], [_El("backend", [("model", "random")], text=rng_device)]),
    ]

    domain = _El(
        "domain",
        [("type", domain_type)],
        [
            _El("name", text=name),
            *([_El("description", text=description)] if description else []),
            _El("memory", [("unit", "MiB")], text=str(memory_mib)),
            _El("vcpu", text=str(vcpu)),
            os_el,
            _El("features", children=[_El("pae"), _El("acpi"), _El("apic")]),
            # newDomainDef always has an (empty) DomainCPU; cpu.mode only adds the attribute.
            _El("cpu", [("mode", cpu_mode)] if cpu_mode else []),
            devices,
        ],
    )
    lines: list[str] = []
    _render(domain, 0, lines)
    return "\n".join(lines)


def provider_network_xml(
    *,
    name: str,
    mode: str = "nat",
    domain: str = "",
    local_only: bool = False,
    bridge: str = "",
    mtu: int | None = None,
    addresses: Sequence[str] = (),
    dhcp_enabled: bool | None = None,
    dns_enabled: bool = False,
    dns_hosts: Sequence[tuple[str, str]] = (),
) -> str:
    """The network XML terraform-provider-libvirt 0.8.1 hands to xsltproc for a ``libvirt.Network``.

    From ``resourceLibvirtNetworkCreate`` and its helpers:

    * ``newNetworkDef``: ``<forward mode="nat"><nat><port start="1024" end="65535"/></nat></forward>``
      is the template; ``mode`` replaces the mode; ``none`` drops ``forward`` entirely, ``route``/``open``
      drop ``nat``. Bridge mode keeps only ``<bridge name=...>`` (no stp), no ip and no dns.
    * ``getBridgeFromResource``: ``<bridge stp="on">`` with ``name`` only when given (libvirt picks virbrN).
    * ``getMTUFromResource``: ``<mtu size=N>`` when set; ``getDomainFromResource``: ``<domain name=...>``
      with ``localOnly="yes"`` only when ``dns.local_only`` is true.
    * ``getDNSEnableFromResource``: ``enable="yes"`` only when ``dns.enabled`` is true, else ``"no"``;
      ``getDNSHostsFromResource`` groups hostnames by IP through a Go map, so the host order is random:
      here they are sorted by IP (libvirt does not care).
    * ``getIPsFromResource`` / ``getNetworkIPConfig``: per CIDR, ``<ip address=<first host> family=ipv4
      prefix=N>`` and a DHCP range from the second host to the last-but-broadcast, unless
      ``dhcp.enabled`` is explicitly false (then no ``<dhcp>``); nat/none/route/open default to DHCP on.
    * The dnsmasq options element is empty and not written; no routes are declared by the program.
    """
    children: list[_El] = []
    if mode == "bridge":
        children.append(_El("forward", [("mode", "bridge")]))
        children.append(_El("bridge", [("name", bridge)]))
    else:
        if mode == "nat":
            nat = _El("nat", children=[_El("port", [("start", "1024"), ("end", "65535")])])
            children.append(_El("forward", [("mode", mode)], [nat]))
        elif mode in ("route", "open"):
            children.append(_El("forward", [("mode", mode)]))
        elif mode != "none":
            raise ValueError(f"unsupported network mode {mode!r}")
        children.append(_El("bridge", [*([("name", bridge)] if bridge else []), ("stp", "on")]))
    if mtu:
        children.append(_El("mtu", [("size", str(mtu))]))
    if mode != "bridge":
        if domain:
            children.append(_El("domain", [("name", domain), *([("localOnly", "yes")] if local_only else [])]))
        by_ip: dict[str, list[str]] = {}
        for hostname, ip in dns_hosts:
            by_ip.setdefault(ip, []).append(hostname)
        hosts = [
            _El("host", [("ip", ip)], [_El("hostname", text=h) for h in by_ip[ip]])
            for ip in sorted(by_ip, key=ipaddress.ip_address)
        ]
        children.append(_El("dns", [("enable", "yes" if dns_enabled else "no")], hosts))
        for cidr in addresses:
            net = ipaddress.ip_network(cidr, strict=False)
            first, last = net.network_address + 1, net.broadcast_address - 1
            family = "ipv4" if net.version == 4 else "ipv6"
            ip_el = _El("ip", [("address", str(first)), ("family", family), ("prefix", str(net.prefixlen))])
            if dhcp_enabled is not False:
                rng = _El("range", [("start", str(first + 1)), ("end", str(last))])
                ip_el.children.append(_El("dhcp", children=[rng]))
            children.append(ip_el)
    lines: list[str] = []
    _render(_El("network", children=[_El("name", text=name), *children]), 0, lines)
    return "\n".join(lines)
