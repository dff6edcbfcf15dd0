"""The XML terraform-provider-libvirt 0.8.1 writes, asked from the libvirt provider double.

The provider's XML conventions (element order, indentation, the untyped pty console, the IDE cloud-init
cdrom, canonical machine names, the network template...) have one copy: e2e/doubles/libvirt/xmldef.go,
which the double uses to define real domains and networks in the VM tier. Tests that need the XML
without a libvirtd run the same binary offline (`pulumi-resource-libvirt domain-xml|network-xml`, see
e2e/doubles/libvirt/offline.go), giving it the resources' inputs and what the provider would look up in
libvirt (volumes, networks, the host's canonical machine names).

The double is built with the engine (e2e/build_engine.py: about 5 minutes cold, nothing when cached);
a failed build fails the tests.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from e2e import build_engine
from hyperscaler.mocks import Registration
from tests.engine import engine_bin

# What getCanonicalMachineName turns machine="q35" into with this host's QEMU 7.2
# (tests/integration/test_libvirt_harness.py checks it against the real capabilities).
Q35_CANONICAL = "pc-q35-7.2"
I440FX_CANONICAL = "pc-i440fx-7.2"
MACHINES = {"q35": Q35_CANONICAL, "pc": I440FX_CANONICAL}

VOLUME = "libvirt:index/volume:Volume"
NETWORK = "libvirt:index/network:Network"
DOMAIN = "libvirt:index/domain:Domain"


@cache
def libvirt_double() -> Path:
    return build_engine.provider_binary(engine_bin(), "libvirt")


def _ask(command: str, request: dict[str, Any]) -> tuple[int, str]:
    proc = subprocess.run(
        [str(libvirt_double()), command], input=json.dumps(request), capture_output=True, text=True, timeout=120
    )
    return proc.returncode, proc.stdout if proc.returncode == 0 else proc.stderr


def domain_xml(
    inputs: dict[str, Any],
    volumes: dict[str, dict[str, Any]],
    networks: dict[str, dict[str, Any]],
    *,
    transform: bool = True,
    arch: str = "x86_64",
) -> str:
    """The domain XML for Domain `inputs` (camelCase, as the program registers them): after its xml.xslt
    when `transform`, else the document the provider hands to xsltproc. `volumes` and `networks` map the
    ids the inputs name to those resources' inputs."""
    request = {
        "inputs": inputs,
        "volumes": volumes,
        "networks": networks,
        "capabilities": {"arch": arch, "machines": MACHINES},
        "transform": transform,
    }
    rc, out = _ask("domain-xml", request)
    assert rc == 0, out
    return out


def network_xml(inputs: dict[str, Any], *, transform: bool = True) -> str:
    rc, out = _ask("network-xml", {"inputs": inputs, "transform": transform})
    assert rc == 0, out
    return out


def provider_xsltproc(xslt: str, xml: str) -> tuple[int, str]:
    """The provider's transformXML alone: (0, transformed XML) or (rc, xsltproc's error)."""
    return _ask("domain-xml", {"xml": xml, "xslt": xslt})


def planned_domain_xml(records: list[Registration], *, transform: bool = True) -> dict[str, str]:
    """{domain name: XML} for every Domain a plan recorded, resolved against the plan's own volumes and
    networks (the mocks answer with ids shaped like the provider's)."""
    volumes = {r.id: r.plain_inputs for r in records if r.type == VOLUME}
    networks = {r.id: r.plain_inputs for r in records if r.type == NETWORK}
    return {
        r.plain_inputs["name"]: domain_xml(r.plain_inputs, volumes, networks, transform=transform)
        for r in records
        if r.type == DOMAIN
    }
