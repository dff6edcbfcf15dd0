"""`hyperscaler doctor`: preflight checks of a hypervisor host before VMs with GPUs are created.

Each check says what it found and, when something is wrong, the concrete command or BIOS setting
that fixes it, so a passthrough failure is caught here instead of as a QEMU error at VM start.
Everything is read through hyperscaler.probe.sysfs below `root`; only the libvirt check runs a
command, and only on the live system (root == "/").
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from config.models.hosts import Firmware, Host, StoragePool
from hyperscaler.probe import inventory, pci_ids, sysfs

if TYPE_CHECKING:
    from config.models import ClusterSpec

Status = Literal["pass", "warn", "fail"]
# (argv, timeout seconds) -> (return code, stdout, stderr); injectable so tests need no virsh.
Runner = Callable[[Sequence[str], float], tuple[int, str, str]]

DEFAULT_URI = "qemu:///system"
VIRSH_TIMEOUT_S = 30.0  # the first virsh call probes QEMU capabilities and can take over 10 s
_BIOS_IOMMU = "enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the BIOS/UEFI setup"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    message: str
    fix: str = ""


def run_doctor(
    root: Path,
    spec: ClusterSpec | None,
    host_name: str | None,
    *,
    hugepages_needed_mib: int = 0,
    memory_needed_mib: int = 0,
    disk_needed_gib: int = 0,
    live: bool | None = None,
    runner: Runner | None = None,
) -> list[CheckResult]:
    """Check the host named host_name in spec (the first host if None), or the host alone if no spec.

    The *_needed arguments are what the caller's plan puts on this host: hugepage-backed guest
    memory, other guest memory, and new volume space in the pool. live defaults to root == "/".
    """
    results: list[CheckResult] = []
    host: Host | None = None
    if spec is not None:
        host = _find_host(spec, host_name)
        if host is None:
            known = ", ".join(h.name for h in spec.hosts)
            results.append(
                CheckResult(
                    "host in stack file",
                    "fail",
                    f"host {host_name!r} is not in cluster.hosts (known: {known})",
                    "pass --host with one of the names above, or add this host from `hyperscaler inventory`",
                )
            )
    return results + run_host_checks(
        root,
        host,
        hugepages_needed_mib=hugepages_needed_mib,
        memory_needed_mib=memory_needed_mib,
        disk_needed_gib=disk_needed_gib,
        live=live,
        runner=runner,
    )


def run_host_checks(
    root: Path,
    host: Host | None,
    *,
    hugepages_needed_mib: int = 0,
    memory_needed_mib: int = 0,
    disk_needed_gib: int = 0,
    live: bool | None = None,
    runner: Runner | None = None,
) -> list[CheckResult]:
    """All checks against one configured host; with host None, the GPUs found on the host are checked."""
    root = Path(root)
    is_live = (root.resolve() == Path("/")) if live is None else live
    results = [_kvm(root, is_live), _virt_flags(root), _iommu_cmdline(root), _iommu_groups(root)]
    if host is not None:
        results.insert(0, _identity(root, host))
        for gpu in host.gpus:
            results += _configured_gpu(
                root,
                gpu.address,
                gpu.model,
                gpu.iommu_group,
                gpu.numa_node,
                [d.address for d in gpu.group_devices],
            )
    else:
        for found in inventory.probe_host(root).gpus:
            results += _gpu_group(root, found.device)
    results.append(_hugepages(root, host, hugepages_needed_mib))
    results.append(_firmware(root, host.firmware if host is not None else Firmware()))
    results.append(_libvirt(host.uri if host is not None else DEFAULT_URI, is_live, runner or _run))
    results.append(_memory(root, memory_needed_mib))
    results.append(_disk(root, host.pool if host is not None else StoragePool(), disk_needed_gib))
    return results


def format_report(results: Sequence[CheckResult]) -> str:
    """One line per check, then an indented fix line for each check that did not pass."""
    lines: list[str] = []
    for result in results:
        lines.append(f"{result.status.upper():<4}  {result.name}: {result.message}")
        if result.fix and result.status != "pass":
            lines.append(f"      fix: {result.fix}")
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "warn", "fail")}
    lines.append(f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed")
    return "\n".join(lines) + "\n"


def exit_code(results: Sequence[CheckResult]) -> int:
    return 1 if any(r.status == "fail" for r in results) else 0


# --- host-level checks -----------------------------------------------------------------------------


def _find_host(spec: ClusterSpec, host_name: str | None) -> Host | None:
    if host_name is None:
        return spec.hosts[0] if spec.hosts else None
    return next((h for h in spec.hosts if h.name == host_name), None)


def _identity(root: Path, host: Host) -> CheckResult:
    # sysfs is always read locally, so checking one host's entry on another machine misleads.
    local = (sysfs.hostname(root) or "").split(".")[0].lower()
    if local == host.name:
        return CheckResult("host identity", "pass", f"this is {host.name}")
    return CheckResult(
        "host identity",
        "warn",
        f"checking the stack-file entry {host.name!r} on a machine named {local or 'unknown'!r}",
        f"run `hyperscaler doctor --host {host.name}` on {host.name} itself, or pick this machine's entry",
    )


def _is_amd(root: Path) -> bool:
    return (sysfs.cpu_vendor(root) or "") in ("AuthenticAMD", "HygonGenuine")


def _kvm(root: Path, live: bool) -> CheckResult:
    module = "kvm_amd" if _is_amd(root) else "kvm_intel"
    path = sysfs.kvm_device(root)
    if path is None:
        return CheckResult(
            "kvm",
            "fail",
            "/dev/kvm does not exist, so VMs cannot use hardware virtualization",
            f"enable VT-x/AMD-V (SVM) in the BIOS/UEFI setup, then `modprobe {module}`",
        )
    if live:
        mode = path.stat().st_mode
        if not stat.S_ISCHR(mode):
            return CheckResult("kvm", "fail", "/dev/kvm is not a character device", f"`modprobe {module}`")
        if mode & 0o060 != 0o060:
            # libvirt then re-probes QEMU on every call, making each define take about a minute.
            return CheckResult(
                "kvm",
                "warn",
                f"/dev/kvm is mode {stat.S_IMODE(mode):04o}; the kvm group cannot use it",
                "chgrp kvm /dev/kvm && chmod 660 /dev/kvm (and check the udev rule for kvm)",
            )
    return CheckResult("kvm", "pass", "/dev/kvm is present")


def _virt_flags(root: Path) -> CheckResult:
    flags = sysfs.cpu_flags(root)
    if "vmx" in flags or "svm" in flags:
        return CheckResult("cpu virtualization", "pass", f"CPU flag {'vmx' if 'vmx' in flags else 'svm'} is set")
    # Only a warning: some kernels hide the flag while /dev/kvm still works.
    return CheckResult(
        "cpu virtualization",
        "warn",
        "neither vmx nor svm is in /proc/cpuinfo flags",
        "enable Intel VT-x / AMD SVM in the BIOS/UEFI setup",
    )


def _grub_fix(params: str) -> str:
    return f"add `{params}` to GRUB_CMDLINE_LINUX in /etc/default/grub, run `update-grub` and reboot"


def _iommu_cmdline(root: Path) -> CheckResult:
    params = sysfs.cmdline_params(root)
    name = "iommu kernel parameters"
    if params.get("iommu") == "off":
        return CheckResult(
            name,
            "fail",
            "the kernel command line has iommu=off",
            _grub_fix("iommu=pt") + " (remove iommu=off)",
        )
    if _is_amd(root):
        # AMD-Vi is on by default and amd_iommu= has no 'on' value; only 'off' disables it.
        if params.get("amd_iommu") == "off":
            return CheckResult(
                name,
                "fail",
                "the kernel command line has amd_iommu=off",
                "remove amd_iommu=off from GRUB_CMDLINE_LINUX, run `update-grub` and reboot",
            )
        return CheckResult(name, "pass", "AMD IOMMU is on by default and not disabled on the command line")
    value = params.get("intel_iommu")
    if value is not None and "on" in value.split(","):
        return CheckResult(name, "pass", f"intel_iommu={value} is on the kernel command line")
    if value is not None and "off" in value.split(","):
        return CheckResult(
            name,
            "fail",
            "the kernel command line has intel_iommu=off",
            _grub_fix("intel_iommu=on iommu=pt") + " (remove intel_iommu=off)",
        )
    if sysfs.iommu_groups(root):
        # Some kernels are built with the Intel IOMMU on by default; groups prove it is active.
        return CheckResult(
            name,
            "warn",
            "intel_iommu=on is not on the kernel command line, but IOMMU groups exist",
            _grub_fix("intel_iommu=on iommu=pt") + " so a kernel change cannot turn it off",
        )
    return CheckResult(
        name, "fail", "intel_iommu=on is not on the kernel command line", _grub_fix("intel_iommu=on iommu=pt")
    )


def _iommu_groups(root: Path) -> CheckResult:
    groups = sysfs.iommu_groups(root)
    if groups:
        return CheckResult("iommu groups", "pass", f"{len(groups)} IOMMU groups in /sys/kernel/iommu_groups")
    fix = _BIOS_IOMMU if _is_amd(root) else f"{_BIOS_IOMMU}; and add intel_iommu=on iommu=pt to the kernel command line"
    return CheckResult("iommu groups", "fail", "/sys/kernel/iommu_groups is empty: the IOMMU is off", fix)


# --- GPUs ------------------------------------------------------------------------------------------


def _configured_gpu(
    root: Path, address: str, model: str, group: int | None, numa_node: int, group_devices: list[str]
) -> list[CheckResult]:
    dev = sysfs.pci_device(root, address)
    prefix = f"gpu {address}"
    if dev is None:
        return [
            CheckResult(
                f"{prefix} present",
                "fail",
                "configured in the stack file but no PCI device has this address",
                "check `lspci -D -nn | grep -i nvidia` and run `hyperscaler inventory`; "
                "fix cluster.hosts[].gpus (addresses change when cards move slots; "
                "also check 'Above 4G decoding' in the BIOS)",
            )
        ]
    results: list[CheckResult] = []
    found_model = pci_ids.gpu_model_name(dev.vendor, dev.device)
    if not pci_ids.is_gpu(dev.vendor, dev.class4):
        results.append(
            CheckResult(
                f"{prefix} present",
                "fail",
                f"{dev.vendor_device} (class {dev.class4 or 'unknown'}) is not a GPU",
                "run `hyperscaler inventory` and copy the GPU addresses it prints",
            )
        )
    elif found_model != model:
        results.append(
            CheckResult(
                f"{prefix} present",
                "warn",
                f"found {dev.vendor_device} ({found_model}) but configured as {model}",
                f"set model: {found_model} for this GPU, or check the card in the slot",
            )
        )
    else:
        results.append(CheckResult(f"{prefix} present", "pass", f"{dev.vendor_device} {model}"))

    if dev.iommu_group is None:
        results.append(
            CheckResult(
                f"{prefix} iommu group",
                "fail",
                "the device has no IOMMU group",
                _BIOS_IOMMU + ", then reboot",
            )
        )
    elif dev.iommu_group != group:
        results.append(
            CheckResult(
                f"{prefix} iommu group",
                "fail",
                f"configured group {'none' if group is None else group}, "
                f"but the host has it in group {dev.iommu_group}",
                f"set iommu_group: {dev.iommu_group} (groups change with BIOS, kernel and slot changes; "
                "re-run `hyperscaler inventory`)",
            )
        )
    else:
        results.append(CheckResult(f"{prefix} iommu group", "pass", f"group {group}"))
        actual = {a for a in sysfs.iommu_group_devices(root, dev.iommu_group) if a != address}
        if actual != set(group_devices):
            results.append(
                CheckResult(
                    f"{prefix} group devices",
                    "warn",
                    f"group_devices lists {sorted(group_devices) or 'none'}, the host has {sorted(actual) or 'none'}",
                    "copy group_devices from `hyperscaler inventory`",
                )
            )

    if dev.numa_node is not None and dev.numa_node != numa_node:
        results.append(
            CheckResult(
                f"{prefix} numa node",
                "warn",
                f"configured node {numa_node}, sysfs says {dev.numa_node}",
                f"set numa_node: {dev.numa_node} so vCPUs and memory are pinned next to the GPU",
            )
        )
    if dev.iommu_group is not None:
        results += _gpu_group(root, dev)
    return results


def _gpu_group(root: Path, gpu: sysfs.PciDevice) -> list[CheckResult]:
    """Driver binding and viability of the GPU's IOMMU group (each member goes to the VM or is a bridge)."""
    prefix = f"gpu {gpu.address}"
    if gpu.iommu_group is None:
        return [CheckResult(f"{prefix} iommu group", "fail", "the device has no IOMMU group", _BIOS_IOMMU)]
    members = [
        d
        for a in sysfs.iommu_group_devices(root, gpu.iommu_group)
        if a != gpu.address and (d := sysfs.pci_device(root, a)) is not None
    ]
    roles = {m.address: pci_ids.group_member_role(gpu.address, m.address, m.class4) for m in members}
    passed = [gpu] + [m for m in members if roles[m.address] == "companion"]
    foreign = [m for m in members if roles[m.address] == "foreign"]
    other_gpus = [m for m in members if roles[m.address] == "gpu"]
    results: list[CheckResult] = []

    not_vfio = [d for d in passed if d.driver != "vfio-pci"]
    if not not_vfio:
        results.append(CheckResult(f"{prefix} driver", "pass", "vfio-pci on the GPU and its companion functions"))
    else:
        bound = ", ".join(f"{d.address} {d.driver or 'no driver'}" for d in not_vfio)
        commands = "; ".join(f"driverctl set-override {d.address} vfio-pci" for d in not_vfio)
        results.append(
            CheckResult(
                f"{prefix} driver",
                "warn",
                f"not bound to vfio-pci: {bound}",
                f"managed=yes will detach it at VM start; or bind with {commands}",
            )
        )

    if foreign:
        names = ", ".join(
            f"{d.address} ({pci_ids.class_name(d.class4)} {d.vendor_device}, driver {d.driver or 'none'})"
            for d in foreign
        )
        results.append(
            CheckResult(
                f"{prefix} group isolation",
                "fail",
                f"IOMMU group {gpu.iommu_group} also holds {names}, which would have to leave the host with the GPU",
                "move the GPU to another slot (one wired to the CPU, not the chipset), or enable ACS (Access "
                "Control Services) in the BIOS/UEFI setup so the devices get separate groups",
            )
        )
    elif other_gpus:
        # Not fatal: the group works if every GPU in it goes to the same VM (`validate` checks that).
        names = ", ".join(f"{d.address} ({d.vendor_device})" for d in other_gpus)
        results.append(
            CheckResult(
                f"{prefix} group isolation",
                "warn",
                f"IOMMU group {gpu.iommu_group} also holds the display device(s) {names}",
                "assign all GPUs of this group to the same VM, or enable ACS in the BIOS/UEFI setup so each "
                "GPU gets its own group",
            )
        )
    else:
        results.append(
            CheckResult(
                f"{prefix} group isolation",
                "pass",
                f"IOMMU group {gpu.iommu_group} holds only the GPU, its functions and bridges",
            )
        )
    return results


# --- resources -------------------------------------------------------------------------------------


def _hugepages(root: Path, host: Host | None, needed_mib: int) -> CheckResult:
    pools = {p.size_kib: p for p in sysfs.hugepage_pools(root)}
    # Without a stack file, judge the pool inventory would have reported.
    size: int = host.hugepages.size_kib if host is not None else inventory.probe_host(root).hugepages_size_kib
    pool = pools.get(size, sysfs.HugepagePool(size, 0, 0))
    label = "1 GiB" if size == 1048576 else f"{size} kB"
    status = f"{pool.free} of {pool.total} {label} pages free ({pool.free_mib} MiB)"
    if needed_mib <= 0:
        if host is not None and host.hugepages.count > pool.free:
            return CheckResult(
                "hugepages",
                "warn",
                f"{status}, but the stack file says {host.hugepages.count} are free",
                f"set hugepages.count: {pool.free}, or reserve more pages",
            )
        return CheckResult("hugepages", "pass", f"{status}; no hugepage-backed memory requested")
    if pool.free_mib >= needed_mib:
        return CheckResult("hugepages", "pass", f"{status}, {needed_mib} MiB needed")
    pages_needed = math.ceil(needed_mib * 1024 / size)
    target = pool.total - pool.free + pages_needed
    if size == 1048576:
        fix = (
            f"add `default_hugepagesz=1G hugepagesz=1G hugepages={target}` to the kernel command line "
            "and reboot (1 GiB pages rarely allocate at runtime)"
        )
    else:
        fix = (
            f"echo {target} > /sys/kernel/mm/hugepages/hugepages-{size}kB/nr_hugepages "
            f"(persist with vm.nr_hugepages={target} in /etc/sysctl.d/)"
        )
    return CheckResult("hugepages", "fail", f"{status}, but {needed_mib} MiB are needed", fix)


def _firmware(root: Path, firmware: Firmware) -> CheckResult:
    missing = [p for p in (firmware.code, firmware.vars_template) if not sysfs.file_exists(root, p)]
    if not missing:
        return CheckResult("uefi firmware", "pass", f"{firmware.code} and {firmware.vars_template} exist")
    return CheckResult(
        "uefi firmware",
        "fail",
        f"missing {', '.join(missing)}",
        "apt-get install ovmf (Debian/Ubuntu), or set firmware.code / firmware.vars_template to the files "
        "the host has (ls /usr/share/OVMF)",
    )


def _run(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout, done.stderr


def _libvirt(uri: str, live: bool, runner: Runner) -> CheckResult:
    name = "libvirt"
    if not live:
        return CheckResult(
            name,
            "warn",
            f"not checked against a fixture root ({uri})",
            "run `hyperscaler doctor` without --root on the host itself",
        )
    if runner is _run and shutil.which("virsh") is None:
        return CheckResult(
            name,
            "fail",
            "virsh is not installed",
            "apt-get install libvirt-clients libvirt-daemon-system qemu-system-x86",
        )
    try:
        code, out, err = runner(["virsh", "-c", uri, "version"], VIRSH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return CheckResult(
            name,
            "fail",
            f"`virsh -c {uri} version` did not answer in {VIRSH_TIMEOUT_S:.0f} s",
            "systemctl restart libvirtd, and check /dev/kvm permissions (chmod 660, group kvm)",
        )
    except OSError as exc:
        return CheckResult(name, "fail", f"could not run virsh: {exc}", "apt-get install libvirt-clients")
    if code != 0:
        # virsh prints a generic first line; the second one says why (socket missing, permission denied).
        detail = " / ".join(line.strip() for line in (err or out).strip().splitlines()[:2]) or f"exit code {code}"
        return CheckResult(
            name,
            "fail",
            f"cannot connect to {uri}: {detail}",
            "systemctl enable --now libvirtd, and add your user to the libvirt group (then log in again)",
        )
    hypervisor = next(
        (line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Running hypervisor")),
        "connected",
    )
    return CheckResult(name, "pass", f"{uri}: {hypervisor}")


def _memory(root: Path, needed_mib: int) -> CheckResult:
    available_kib = sysfs.meminfo(root).get("MemAvailable")
    if available_kib is None:
        return CheckResult("memory", "warn", "no MemAvailable in /proc/meminfo", "check `free -m` by hand")
    available = available_kib // 1024
    if needed_mib <= available:
        return CheckResult("memory", "pass", f"{available} MiB available, {needed_mib} MiB needed (outside hugepages)")
    return CheckResult(
        "memory",
        "fail",
        f"{available} MiB available, but the VMs need {needed_mib} MiB (outside hugepages)",
        "stop other VMs or services on the host, or lower the nodes' memory_mib / count in the stack file",
    )


def _disk(root: Path, pool: StoragePool, needed_gib: int) -> CheckResult:
    path = sysfs.rooted(root, pool.path)
    if not path.is_dir():
        return CheckResult(
            "pool disk space",
            "warn",
            f"{pool.path} does not exist yet, so its free space is unknown",
            f"mkdir -p {pool.path}"
            + (f" on a filesystem with at least {needed_gib} GiB free" if needed_gib > 0 else ""),
        )
    st = os.statvfs(path)
    free_gib = st.f_bavail * st.f_frsize // 2**30
    if free_gib >= needed_gib:
        return CheckResult("pool disk space", "pass", f"{free_gib} GiB free in {pool.path}, {needed_gib} GiB needed")
    return CheckResult(
        "pool disk space",
        "fail",
        f"{free_gib} GiB free in {pool.path}, but {needed_gib} GiB are needed",
        "free space there, or set pool.path to a larger filesystem (that replaces every volume: migrate first)",
    )
