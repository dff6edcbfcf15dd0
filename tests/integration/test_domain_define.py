"""The generated domain XSLT against what really runs it: xsltproc as the provider calls it, libvirt's
RelaxNG schema, and `virsh define` on a real (namespaced) libvirtd.

The input is the program's own Domain resources, planned under the mocks, turned into the domain XML
terraform-provider-libvirt 0.8.1 writes and transformed by their xml.xslt, by the libvirt provider double
(tests/integration/provider_xml.py: the one copy of those conventions, the one the VM tier defines real
domains with); the output is compared with tests/golden/<stack>/<node>/domain.xml (pytest
--update-golden rewrites it). Define only: this machine has no GPU and no IOMMU, so a start would fail at
the hostdevs. A missing tool makes these tests fail, never skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from xml.etree import ElementTree

import pytest

from config.topology import NodePlan, plan_nodes
from hyperscaler.plan import run_plan
from render.domain_xslt import render_domain_xslt
from render.placement import plan_placement
from tests.integration.libvirt_harness import Libvirtd, require_tools, virt_xml_validate
from tests.integration.provider_xml import planned_domain_xml, provider_xsltproc
from tests.stacks import ROOT, STACKS, loaded  # every committed stack, dev included

pytestmark = pytest.mark.integration


@cache
def _planned(stack: str) -> dict[str, str]:
    return planned_domain_xml(run_plan(ROOT / f"Pulumi.{stack}.yaml").records)


def transformed(stack: str) -> Iterator[tuple[NodePlan, str]]:
    """Each node and the XML the provider would define for it (after its xml.xslt)."""
    spec = loaded(stack).spec
    xml = _planned(stack)
    for node in plan_nodes(spec):
        yield node, xml[f"{spec.name}-{node.name}"]


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[Libvirtd]:
    with Libvirtd() as lv:
        yield lv


def test_tools_are_installed() -> None:
    require_tools()


@pytest.mark.parametrize("stack", STACKS)
def test_transformed_xml_matches_golden(stack: str, golden: Callable[[str, str], None]) -> None:
    for node, xml in transformed(stack):
        golden(f"{stack}/{node.name}/domain.xml", xml)


@pytest.mark.parametrize("stack", STACKS)
def test_transformed_xml_passes_the_schema(stack: str) -> None:
    for node, xml in transformed(stack):
        rc, out = virt_xml_validate(xml)
        assert rc == 0, f"{node.name}: {out}"


@pytest.mark.parametrize("stack", STACKS)
def test_the_stylesheet_is_idempotent(stack: str) -> None:
    # The provider re-applies xml.xslt to the XML it generates on every update; applying it to its own
    # output must change nothing either.
    spec = loaded(stack).spec
    tunings = plan_placement(spec)
    for node, xml in transformed(stack):
        rc, again = provider_xsltproc(render_domain_xslt(tunings[node.name]), xml)
        assert rc == 0 and again == xml, node.name


@pytest.mark.parametrize("stack", STACKS)
def test_libvirt_defines_every_node(libvirtd: Libvirtd, stack: str) -> None:
    spec = loaded(stack).spec
    tunings = plan_placement(spec)
    for node, xml in transformed(stack):
        domain = f"{spec.name}-{node.name}"
        tuning = tunings[node.name]
        for validate in (True, False):  # --validate adds the schema; the provider defines without it
            rc, out = libvirtd.define(xml, validate=validate)
            assert rc == 0, f"{domain}: {out}"
            rc, dumped = libvirtd.dumpxml(domain)
            assert rc == 0, dumped
            assert libvirtd.undefine(domain)[0] == 0
        root = ElementTree.fromstring(dumped)
        # What libvirt kept is what the tuning asked for.
        pins = {int(p.get("vcpu", -1)): int(p.get("cpuset", -1)) for p in root.iterfind("cputune/vcpupin")}
        assert pins == dict(tuning.vcpupins), domain
        hostdevs = root.findall("devices/hostdev")
        assert len(hostdevs) == len(tuning.hostdevs), domain
        assert len(root.findall("devices/controller[@model='pcie-root-port']")) >= len(hostdevs)
        assert (root.find("memoryBacking/hugepages") is not None) == (tuning.hugepage_kib is not None), domain
        assert (root.find("memoryBacking/locked") is not None) == tuning.locked_memory, domain
        serials = sorted(s.text or "" for s in root.iterfind("devices/disk[@device='disk']/serial"))
        assert serials == sorted(serial for _, serial in tuning.disk_serials), domain
        cdrom = root.find("devices/disk[@device='cdrom']/target")
        assert cdrom is not None and cdrom.get("bus") == "sata", domain
        if tuning.pcihole64_kib:
            hole = root.find("devices/controller[@model='pcie-root']/pcihole64")
            assert hole is not None and int(hole.text or 0) == tuning.pcihole64_kib, domain
        if tuning.maxphysaddr_passthrough:
            assert root.find("cpu/maxphysaddr[@mode='passthrough']") is not None, domain
