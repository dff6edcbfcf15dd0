"""Reusable constrained types for the stack file.

Each type carries its own validation and a message that says what would be valid, so models stay
declarative and every field of the same kind is checked the same way.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field, Strict, StringConstraints

_HOSTNAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_PCI_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")


def _hostname(value: str) -> str:
    if not _HOSTNAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid hostname: use 1-63 lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-'"
        )
    return value


def _pci_address(value: str) -> str:
    value = value.lower()
    if len(value) == 7:  # "41:00.0" is accepted and means PCI domain 0000
        value = "0000:" + value
    if not _PCI_RE.match(value):
        raise ValueError(f"{value!r} is not a PCI address: expected DDDD:BB:SS.F, e.g. 0000:41:00.0")
    return value


def _cidr(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 network in CIDR form, e.g. 10.77.0.0/24 ({exc})") from None
    if net.prefixlen > 29:
        raise ValueError(f"{value!r} is too small: use a /29 or larger network")
    return str(net)


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address, e.g. 10.77.0.10") from None


def _cpuset(value: str) -> str:
    parse_cpuset(value)
    return value


def parse_cpuset(value: str) -> list[int]:
    """Parse a Linux cpulist ("0-3,8,10-11") into sorted CPU numbers."""
    cpus: set[int] = set()
    if not value.strip():
        return []
    for part in value.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"{value!r} is not a CPU list: expected e.g. '0-3,8,10-11'")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo:
            raise ValueError(f"{value!r} has a descending range {part!r}")
        cpus.update(range(lo, hi + 1))
    return sorted(cpus)


def format_cpuset(cpus: list[int] | set[int]) -> str:
    """The inverse of parse_cpuset: compact ranges, sorted."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    start = prev = None
    for cpu in ordered:
        if start is None:
            start = prev = cpu
        elif prev is not None and cpu == prev + 1:
            prev = cpu
        else:
            parts.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = cpu
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(parts)


Hostname = Annotated[str, AfterValidator(_hostname)]
PciAddress = Annotated[str, AfterValidator(_pci_address)]
Cidr = Annotated[str, AfterValidator(_cidr)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
CpuSet = Annotated[str, AfterValidator(_cpuset)]
# Strict: `true` or "4096" in a size field is a mistake to report, not a value to coerce.
MiB = Annotated[int, Strict(), Field(gt=0, description="mebibytes")]
GiB = Annotated[int, Strict(), Field(gt=0, description="gibibytes")]
Count = Annotated[int, Strict(), Field(ge=0)]
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
