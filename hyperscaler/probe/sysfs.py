"""Pure readers of the kernel's sysfs and procfs, relative to a root directory.

Every reader takes `root` (default "/") and reads only below root/sys, root/proc, root/dev and
root/usr/share, in the kernel's own layout. A test (or `--root`) can therefore point them at a
fixture tree that copies that layout, relative symlinks included.

Missing files are normal: a kernel without NUMA has no node directories, a device without a driver
has no `driver` link, a host with the IOMMU off has no `iommu_group` links. Readers return None or
an empty collection then, and never raise for absent files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from config.types import parse_cpuset

ROOT = Path("/")
_BDF_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_HUGEPAGES_DIR_RE = re.compile(r"^hugepages-(\d+)kB$")


# --- low-level helpers ---------------------------------------------------------------------------


def _under(root: Path, absolute: str) -> Path:
    """root + an absolute path; `absolute` may or may not start with '/'."""
    return Path(root) / absolute.lstrip("/")


def read_text(root: Path, absolute: str) -> str | None:
    """The stripped content of a file, or None when it is missing or unreadable."""
    try:
        return _under(root, absolute).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _read_path(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _read_int(path: Path, base: int = 10) -> int | None:
    text = _read_path(path)
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def _link_name(path: Path) -> str | None:
    """The last component of a symlink's target, without following it.

    The kernel's `driver` and `iommu_group` links are relative (../../../kernel/iommu_groups/12), and
    a fixture may hold absolute ones; the basename is the same either way and never leaves root.
    """
    try:
        return os.path.basename(os.readlink(path).rstrip("/")) or None
    except OSError:
        return None


def _in_root(root: Path, path: Path) -> Path:
    """Follow one symlink at `path` so that an absolute target stays inside root (fixture trees)."""
    try:
        target = os.readlink(path)
    except OSError:
        return path
    if os.path.isabs(target) and Path(root) != ROOT:
        return _under(root, target)
    return path


def _sorted_entries(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []


# --- PCI ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PciDevice:
    """One PCI function as /sys/bus/pci/devices/<bdf> describes it."""

    address: str
    vendor: int | None
    device: int | None
    class_code: int | None  # the 24-bit class, e.g. 0x030200
    numa_node: int | None  # None when missing or -1 (the firmware did not say)
    iommu_group: int | None  # None when the IOMMU is off or the link is missing
    driver: str | None  # None when no driver is bound

    @property
    def class4(self) -> str:
        """Base class + subclass as 4 lowercase hex digits (0x030000 -> '0300'); '' if unknown."""
        return f"{self.class_code >> 8:04x}" if self.class_code is not None else ""

    @property
    def vendor_device(self) -> str:
        """'10de:2331', as lspci -nn prints it."""
        ven = f"{self.vendor:04x}" if self.vendor is not None else "????"
        dev = f"{self.device:04x}" if self.device is not None else "????"
        return f"{ven}:{dev}"

    @property
    def slot(self) -> str:
        """Domain, bus and slot without the function: '0000:41:00'."""
        return self.address.rsplit(".", 1)[0]


def _pci_devices_dir(root: Path) -> Path:
    return _under(root, "/sys/bus/pci/devices")


def pci_addresses(root: Path = ROOT) -> list[str]:
    """Every PCI function the kernel knows, sorted by address."""
    return [name for name in _sorted_entries(_pci_devices_dir(root)) if _BDF_RE.match(name)]


def pci_device(root: Path, address: str) -> PciDevice | None:
    """One PCI function, or None when no such address exists on this host."""
    link = _pci_devices_dir(root) / address
    if not (link.is_symlink() or link.exists()):
        return None
    directory = _in_root(root, link)
    numa = _read_int(directory / "numa_node")
    group = _link_name(directory / "iommu_group")
    return PciDevice(
        address=address,
        vendor=_read_int(directory / "vendor", 16),
        device=_read_int(directory / "device", 16),
        class_code=_read_int(directory / "class", 16),
        numa_node=numa if numa is not None and numa >= 0 else None,
        iommu_group=int(group) if group is not None and group.isdigit() else None,
        driver=_link_name(directory / "driver"),
    )


def pci_devices(root: Path = ROOT) -> list[PciDevice]:
    return [dev for addr in pci_addresses(root) if (dev := pci_device(root, addr)) is not None]


def iommu_groups(root: Path = ROOT) -> dict[int, list[str]]:
    """IOMMU group number -> PCI addresses in it. Empty when the IOMMU is off (or the dir is absent)."""
    base = _under(root, "/sys/kernel/iommu_groups")
    groups: dict[int, list[str]] = {}
    for name in _sorted_entries(base):
        if name.isdigit():
            groups[int(name)] = [d for d in _sorted_entries(base / name / "devices") if _BDF_RE.match(d)]
    return dict(sorted(groups.items()))


def iommu_group_devices(root: Path, group: int) -> list[str]:
    """The PCI addresses in one IOMMU group, sorted."""
    base = _under(root, f"/sys/kernel/iommu_groups/{group}/devices")
    return [d for d in _sorted_entries(base) if _BDF_RE.match(d)]


def pci_ids_name(root: Path, vendor: int | None, device: int | None) -> str | None:
    """'Vendor Device' from pci.ids under root/usr/share (pciutils/hwdata), if the file is there."""
    if vendor is None or device is None:
        return None
    for candidate in ("/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids"):
        path = _under(root, candidate)
        if path.is_file():
            return _lookup_pci_ids(path, f"{vendor:04x}", f"{device:04x}")
    return None


def _lookup_pci_ids(path: Path, vendor: str, device: str) -> str | None:
    # pci.ids: "vvvv  Vendor" at column 0, "\tdddd  Device" below it, "\t\t" subsystems (ignored).
    vendor_name: str | None = None
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip() or line.startswith("#"):
                    continue
                if not line.startswith("\t"):
                    if vendor_name is not None:
                        return None  # left the vendor's block without finding the device
                    if line[:4].lower() == vendor:
                        vendor_name = line[4:].strip()
                elif vendor_name is not None and not line.startswith("\t\t") and line[1:5].lower() == device:
                    return f"{vendor_name} {line[5:].strip()}"
    except OSError:
        return None
    return None


# --- CPUs and NUMA -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogicalCpu:
    cpu: int
    package: int
    die: int
    core: int
    siblings: tuple[int, ...]  # this CPU's hardware threads, itself included


def online_cpus(root: Path = ROOT) -> list[int]:
    """CPUs from /sys/devices/system/cpu/online, or every cpuN directory if that file is missing."""
    text = read_text(root, "/sys/devices/system/cpu/online")
    if text:
        try:
            return parse_cpuset(text)
        except ValueError:
            pass
    base = _under(root, "/sys/devices/system/cpu")
    return sorted(int(n[3:]) for n in _sorted_entries(base) if re.fullmatch(r"cpu\d+", n))


def cpu_topology(root: Path = ROOT) -> list[LogicalCpu]:
    """Package, die, core and thread siblings of each online CPU (offline CPUs have no topology dir)."""
    result: list[LogicalCpu] = []
    for cpu in online_cpus(root):
        topo = _under(root, f"/sys/devices/system/cpu/cpu{cpu}/topology")
        package = _read_int(topo / "physical_package_id")
        core = _read_int(topo / "core_id")
        if package is None or core is None:
            continue
        siblings_text = _read_path(topo / "thread_siblings_list")
        try:
            siblings = tuple(parse_cpuset(siblings_text)) if siblings_text else (cpu,)
        except ValueError:
            siblings = (cpu,)
        die = _read_int(topo / "die_id")
        result.append(LogicalCpu(cpu, package, die if die is not None else 0, core, siblings))
    return result


@dataclass(frozen=True)
class NumaNodeInfo:
    id: int
    cpus: list[int]
    memory_kib: int | None


def numa_nodes(root: Path = ROOT) -> list[NumaNodeInfo]:
    """Nodes under /sys/devices/system/node; empty on a kernel built without NUMA."""
    base = _under(root, "/sys/devices/system/node")
    nodes: list[NumaNodeInfo] = []
    for name in _sorted_entries(base):
        match = re.fullmatch(r"node(\d+)", name)
        if not match:
            continue
        node_id = int(match.group(1))
        cpulist = _read_path(base / name / "cpulist") or ""
        try:
            cpus = parse_cpuset(cpulist)
        except ValueError:
            cpus = []
        memory = _node_meminfo(base / name / "meminfo").get("MemTotal")
        nodes.append(NumaNodeInfo(node_id, cpus, memory))
    return sorted(nodes, key=lambda n: n.id)


def _node_meminfo(path: Path) -> dict[str, int]:
    # Lines look like "Node 0 MemTotal:       65747720 kB".
    values: dict[str, int] = {}
    for line in (_read_path(path) or "").splitlines():
        match = re.match(r"^Node\s+\d+\s+(\S+):\s+(\d+)", line)
        if match:
            values[match.group(1)] = int(match.group(2))
    return values


# --- memory ----------------------------------------------------------------------------------------


def meminfo(root: Path = ROOT) -> dict[str, int]:
    """/proc/meminfo as name -> value (kB for sizes, a plain number for HugePages_* counts)."""
    values: dict[str, int] = {}
    for line in (read_text(root, "/proc/meminfo") or "").splitlines():
        match = re.match(r"^([^:\s]+):\s+(\d+)", line)
        if match:
            values[match.group(1)] = int(match.group(2))
    return values


@dataclass(frozen=True)
class HugepagePool:
    size_kib: int
    total: int  # nr_hugepages
    free: int  # free_hugepages

    @property
    def free_mib(self) -> int:
        return self.free * self.size_kib // 1024


def _hugepage_pools(directory: Path) -> list[HugepagePool]:
    pools: list[HugepagePool] = []
    for name in _sorted_entries(directory):
        match = _HUGEPAGES_DIR_RE.match(name)
        if match:
            total = _read_int(directory / name / "nr_hugepages") or 0
            free = _read_int(directory / name / "free_hugepages") or 0
            pools.append(HugepagePool(int(match.group(1)), total, free))
    return sorted(pools, key=lambda p: p.size_kib)


def hugepage_pools(root: Path = ROOT, node: int | None = None) -> list[HugepagePool]:
    """Hugepage pools by size, host-wide (/sys/kernel/mm/hugepages) or for one NUMA node."""
    if node is None:
        return _hugepage_pools(_under(root, "/sys/kernel/mm/hugepages"))
    return _hugepage_pools(_under(root, f"/sys/devices/system/node/node{node}/hugepages"))


# --- kernel, CPU flags, devices, files ------------------------------------------------------------


def kernel_cmdline(root: Path = ROOT) -> list[str]:
    """/proc/cmdline split into words (parameters after a bare '--' go to init and are dropped)."""
    words = (read_text(root, "/proc/cmdline") or "").split()
    return words[: words.index("--")] if "--" in words else words


def cmdline_params(root: Path = ROOT) -> dict[str, str]:
    """Kernel parameters as key -> value; a bare flag maps to ''. The last occurrence wins, as in Linux."""
    params: dict[str, str] = {}
    for word in kernel_cmdline(root):
        key, _, value = word.partition("=")
        params[key] = value
    return params


def cpuinfo_field(root: Path, field: str) -> str | None:
    """The first value of a /proc/cpuinfo field (e.g. vendor_id), or None."""
    for line in (read_text(root, "/proc/cpuinfo") or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == field:
            return value.strip()
    return None


def cpu_vendor(root: Path = ROOT) -> str | None:
    """'GenuineIntel', 'AuthenticAMD' (or 'HygonGenuine'...), from /proc/cpuinfo vendor_id."""
    return cpuinfo_field(root, "vendor_id")


def cpu_flags(root: Path = ROOT) -> set[str]:
    return set((cpuinfo_field(root, "flags") or "").split())


def kvm_device(root: Path = ROOT) -> Path | None:
    """root/dev/kvm if it exists (a character device on a live host, any file in a fixture)."""
    path = _under(root, "/dev/kvm")
    return path if path.exists() else None


def hostname(root: Path = ROOT) -> str | None:
    return read_text(root, "/proc/sys/kernel/hostname") or None


def file_exists(root: Path, absolute: str) -> bool:
    """Whether an absolute host path (such as an OVMF file) exists below root."""
    return _under(root, absolute).exists()


def rooted(root: Path, absolute: str) -> Path:
    """An absolute host path as seen from root."""
    return _under(root, absolute)
