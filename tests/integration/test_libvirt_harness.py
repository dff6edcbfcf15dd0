"""The provider-shaped base domain XML against a real (namespaced) libvirtd.

Needs root and the Debian libvirt/QEMU packages; a missing tool makes these tests fail, not skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.integration.harness.nodes import pids_in_netns
from tests.integration.libvirt_harness import Libvirtd, require_tools, virt_xml_validate
from tests.integration.provider_xml import I440FX_CANONICAL, Q35_CANONICAL, domain_xml, provider_xsltproc

pytestmark = pytest.mark.integration

# The two things the provider's own output needs before libvirt takes it on q35 with validation.
FIX_XSLT = """
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="node()|@*">
    <xsl:copy><xsl:apply-templates select="node()|@*"/></xsl:copy>
  </xsl:template>
  <!-- newDiskForCloudInit hard-codes hdd/ide, which q35 does not have. -->
  <xsl:template match="/domain/devices/disk[@device='cdrom']/target">
    <target dev="sda" bus="sata"/>
  </xsl:template>
  <!-- A pty console without source_path is written without type; the RNG schema wants one. -->
  <xsl:template match="/domain/devices/console[not(@type)]">
    <console type="pty"><xsl:apply-templates select="node()"/></console>
  </xsl:template>
</xsl:stylesheet>
"""


def base_xml(name: str = "hs-base", domain_type: str = "qemu", machine: str = "q35") -> str:
    """What the provider writes (before any xml.xslt) for a UEFI Domain with one volume disk, a cloud-init
    disk, two network interfaces and a pty console, the shape the program declares."""
    pool = "/var/lib/libvirt/images"
    inputs = {
        "name": name,
        "type": domain_type,
        "machine": machine,
        "vcpu": 2,
        "memory": 2048,
        "cpu": {"mode": "host-passthrough"},
        "firmware": "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "nvram": {"file": f"/var/lib/libvirt/qemu/nvram/{name}_VARS.fd", "template": "/usr/share/OVMF/OVMF_VARS_4M.fd"},
        "disks": [{"volumeId": f"{pool}/{name}.qcow2"}],
        "cloudinit": f"{pool}/{name}-cloudinit.iso;00000000-0000-0000-0000-000000000000",
        "networkInterfaces": [
            {"networkId": "mgmt", "mac": "52:54:00:0a:00:01"},
            {"networkId": "fabric", "mac": "52:54:00:0b:00:01"},
        ],
        "consoles": [{"type": "pty", "targetPort": "0", "targetType": "serial"}],
    }
    volumes = {f"{pool}/{name}.qcow2": {"name": f"{name}.qcow2", "pool": "default", "format": "qcow2"}}
    networks = {"mgmt": {"name": "hs-mgmt", "mode": "nat"}, "fabric": {"name": "hs-fabric", "mode": "none"}}
    return domain_xml(inputs, volumes, networks, transform=False)


def fixed_xml(name: str, domain_type: str = "qemu") -> str:
    rc, out = provider_xsltproc(FIX_XSLT, base_xml(name, domain_type))
    assert rc == 0, out
    return out


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[Libvirtd]:
    with Libvirtd() as lv:
        yield lv


def test_required_tools_are_installed() -> None:
    require_tools()


def test_base_xml_has_the_provider_shape() -> None:
    xml = base_xml()
    assert xml.startswith('  <domain type="qemu">')  # Go's Indent prefix, no XML declaration
    root = ElementTree.fromstring(xml)
    assert [c.tag for c in root] == ["name", "memory", "vcpu", "os", "features", "cpu", "devices"]
    assert [c.tag for c in root.find("os") or []] == ["type", "loader", "nvram"]
    assert [c.tag for c in root.find("features") or []] == ["pae", "acpi", "apic"]
    devices = root.find("devices")
    assert devices is not None
    assert [c.tag for c in devices] == ["disk", "disk", "interface", "interface", "console", "channel", "rng"]
    os_type = root.find("os/type")
    assert os_type is not None and os_type.get("arch") is None  # arch/emulator are left to libvirt
    assert devices.find("emulator") is None and devices.find("graphics") is None
    cdrom = devices.find("disk[@device='cdrom']/target")
    assert cdrom is not None and (cdrom.get("dev"), cdrom.get("bus")) == ("hdd", "ide")
    assert [m.get("address") for m in devices.iterfind("interface/mac")] == [
        "52:54:00:0A:00:01",
        "52:54:00:0B:00:01",
    ]
    console = devices.find("console")
    assert console is not None and console.get("type") is None


def test_q35_canonical_name_matches_this_host(libvirtd: Libvirtd) -> None:
    assert libvirtd.canonical_machine("q35") == Q35_CANONICAL


def test_raw_provider_xml_fails_the_schema_only_for_the_untyped_console() -> None:
    rc, out = virt_xml_validate(base_xml())
    assert rc == 3, out
    typed = base_xml().replace("<console>", '<console type="pty">')
    rc, out = virt_xml_validate(typed)
    assert rc == 0, out


def test_raw_provider_xml_is_rejected_on_q35_for_the_ide_cdrom(libvirtd: Libvirtd) -> None:
    # Without --validate, like the provider's DomainDefineXML.
    rc, out = libvirtd.define(base_xml("hs-raw-q35"), validate=False)
    assert rc == 1
    assert "IDE controllers are unsupported" in out


def test_raw_provider_xml_is_accepted_on_i440fx(libvirtd: Libvirtd) -> None:
    # Same XML, machine pc: nothing else in the provider's output stops libvirt.
    xml = base_xml("hs-raw-pc", machine="pc")
    assert f'machine="{I440FX_CANONICAL}"' in xml
    rc, out = libvirtd.define(xml, validate=False)
    assert rc == 0, out
    assert libvirtd.undefine("hs-raw-pc")[0] == 0


@pytest.mark.parametrize("domain_type", ["qemu", "kvm"])
def test_fixed_base_xml_validates_and_is_defined(libvirtd: Libvirtd, domain_type: str) -> None:
    name = f"hs-fixed-{domain_type}"
    xml = fixed_xml(name, domain_type)
    rc, out = virt_xml_validate(xml)
    assert rc == 0, out
    rc, out = libvirtd.define(xml)
    assert rc == 0, out
    rc, dumped = libvirtd.dumpxml(name)
    assert rc == 0, dumped
    # libvirt fills in what the provider leaves out.
    assert re.search(r"<type arch='x86_64' machine='pc-q35-7\.2'>hvm</type>", dumped)
    assert "<emulator>/usr/bin/qemu-system-x86_64</emulator>" in dumped
    assert "<controller type='sata'" in dumped
    # The definition lands in the instance's private /etc/libvirt, not the host's.
    assert (libvirtd.workdir / "etc" / "qemu" / f"{name}.xml").exists()
    assert not Path(f"/etc/libvirt/qemu/{name}.xml").exists()
    assert libvirtd.undefine(name)[0] == 0


def test_malformed_xml_is_rejected(libvirtd: Libvirtd) -> None:
    broken = base_xml("hs-broken")[:-20]
    assert virt_xml_validate(broken)[0] == 1
    rc, out = libvirtd.define(broken)
    assert rc == 1 and "error" in out.lower()


def test_schema_invalid_xml_is_rejected(libvirtd: Libvirtd) -> None:
    bad = fixed_xml("hs-bad").replace("</devices>", "<bogus/></devices>")
    assert virt_xml_validate(bad)[0] == 3
    rc, out = libvirtd.define(bad)
    assert rc == 1 and "failed to validate against schema" in out


HOSTDEV = (
    '<hostdev mode="subsystem" type="pci" managed="yes"><driver name="vfio"/><source>'
    '<address domain="0x0000" bus="0x41" slot="0x00" function="0x0"/></source></hostdev>'
)
NUMATUNE_NODE1 = '<numatune><memory mode="strict" nodeset="1"/></numatune>'


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # None of these exist on the 1-NUMA-node, 2-CPU, no-hugepages test host; define does not look.
        pytest.param("</devices>", HOSTDEV + "</devices>", id="hostdev-absent-pci"),
        pytest.param("<os>", NUMATUNE_NODE1 + "<os>", id="numatune-node1"),
        pytest.param("<os>", '<cputune><vcpupin vcpu="0" cpuset="8"/></cputune><os>', id="vcpupin-cpu8"),
        pytest.param("<os>", "<memoryBacking><hugepages/></memoryBacking><os>", id="hugepages-unconfigured"),
    ],
)
def test_define_does_not_check_host_resources(libvirtd: Libvirtd, old: str, new: str) -> None:
    name = "hs-probe"
    xml = fixed_xml(name)
    assert old in xml
    xml = xml.replace(old, new, 1)
    assert virt_xml_validate(xml)[0] == 0
    rc, out = libvirtd.define(xml)
    assert rc == 0, out
    assert libvirtd.undefine(name)[0] == 0


def test_outside_uri_reaches_the_same_daemon(libvirtd: Libvirtd) -> None:
    proc = subprocess.run(
        ["virsh", "-q", "-c", libvirtd.uri, "list", "--all", "--name"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


# A diskless TCG guest that sits in the firmware: enough to leave a QEMU process running.
RUNNING_DOMAIN = """<domain type="qemu"><name>hs-left-running</name><memory unit="MiB">32</memory>
<os><type arch="x86_64" machine="pc">hvm</type></os></domain>"""


def test_teardown_leaves_nothing_behind() -> None:
    lv = Libvirtd()
    with lv:
        assert lv._holder is not None
        pids = [lv._holder.pid, *(p.pid for p in lv._daemons.values())]
        workdir, netns = lv.workdir, lv.netns
        # A domain left running (a VM test that failed): QEMU lives in a mount namespace of its own, so
        # only the network namespace tells it belongs to this instance.
        rc, out = lv.define(RUNNING_DOMAIN, validate=False)
        assert rc == 0, out
        rc, out = lv.virsh("start", "hs-left-running")
        assert rc == 0, out
        qemu = [p for p in pids_in_netns(netns) if "qemu" in Path(f"/proc/{p}/comm").read_text()]
        assert qemu, "no QEMU process in the instance's network namespace"
    for pid in pids:  # stop() waited for them, so not even zombies remain
        assert not Path(f"/proc/{pid}").exists()
    # QEMU's parent, libvirtd, is gone too: init reaps it, which may take a moment on a busy machine.
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{p}").exists() for p in qemu) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in qemu if Path(f"/proc/{p}").exists()], "QEMU outlived the harness"
    assert not workdir.exists()
    assert not os.path.exists(f"/run/netns/{netns}")
