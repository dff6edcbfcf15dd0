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

Checked against libvirt 9.0.0 here (tests/integration/test_libvirt_harness.py): the output is
well-formed, fails ``virt-xml-validate`` only for the untyped console, and ``virsh define`` (no
validation, as the provider calls it) fails on q35 only because of the IDE cdrom.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
) -> str:
    """Return the domain XML the provider hands to xsltproc, for a Domain declared with name, type,
    machine, vcpu, memory, cpu.mode, firmware + nvram(file, template), one ``volume_id`` disk per entry
    of ``disk_paths`` (volume name = basename, pool = ``disk_pool``), a CloudInitDisk, one
    network_interface per (network name, mac), one pty console (target_type serial, port 0) and autostart.

    ``machine`` must already be canonical (the provider resolves ``q35`` through the host
    capabilities); ``cloudinit_iso``/``firmware`` may be empty to leave those parts out.
    """
    if len(mac_addresses) != len(network_names):
        raise ValueError("need exactly one MAC address per network interface")

    os_el = _El("os", children=[_El("type", [("machine", machine)], text="hvm")])
    if firmware:
        loader_attrs = [("readonly", "yes"), ("secure", "no"), ("type", "pflash")]
        os_el.children.append(_El("loader", loader_attrs, text=firmware))
        if nvram_file or nvram_template:
            nvram_attrs = [("template", nvram_template)] if nvram_template else []
            os_el.children.append(_El("nvram", nvram_attrs, text=nvram_file))

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
