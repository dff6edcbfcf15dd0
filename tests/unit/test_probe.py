"""Host probing (`inventory`, `doctor`) against fixture trees in the kernel's sysfs/procfs layout."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from config.catalog import CATALOG
from config.models import ClusterSpec, Gpu, Host, Hugepages
from hyperscaler.probe import doctor, pci_ids, sysfs
from hyperscaler.probe.doctor import CheckResult, exit_code, format_report, run_doctor, run_host_checks
from hyperscaler.probe.inventory import inventory, probe_host, render_inventory_yaml

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
ALL_FIXTURES = sorted(p.name for p in HOSTS.iterdir() if p.is_dir() and (p / "sys").is_dir())


def _load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_fixtures", HOSTS / "build_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def _spec(host: Host) -> ClusterSpec:
    # Only spec.hosts is read by doctor; model_construct keeps this test independent of other sections.
    return ClusterSpec.model_construct(name="test", hosts=[host])


def _self_host(fixture: str, **changes: Any) -> Host:
    """The fixture's own inventory as a validated Host, with some fields replaced."""
    data = inventory(HOSTS / fixture)
    data.update(changes)
    return Host.model_validate(data)


# --- inventory ---------------------------------------------------------------------------------------

EXPECTED: dict[str, dict[str, Any]] = {
    "intel-geforce": {
        "name": "ws1",
        "cpu": {"sockets": 1, "cores_per_socket": 8, "threads_per_core": 2},
        "memory_mib": 64206,
        "numa_nodes": [{"id": 0, "cpus": "0-15", "memory_mib": 64206}],
        "hugepages": {"size_kib": 2048, "count": 8192},
        "gpus": [
            {
                "address": "0000:01:00.0",
                "model": "rtx-4090",
                "iommu_group": 12,
                "numa_node": 0,
                "group_devices": [
                    {
                        "address": "0000:01:00.1",
                        "class_code": "0403",
                        "description": "Audio device [10de:22ba]: "
                        "NVIDIA Corporation AD102 High Definition Audio Controller",
                    }
                ],
            }
        ],
    },
    "amd-2xh100": {
        "name": "gpu-a01",
        "cpu": {"sockets": 2, "cores_per_socket": 16, "threads_per_core": 2},
        "memory_mib": 515607,
        "numa_nodes": [
            {"id": 0, "cpus": "0-15,32-47", "memory_mib": 257601},
            {"id": 1, "cpus": "16-31,48-63", "memory_mib": 258006},
        ],
        "hugepages": {"size_kib": 1048576, "count": 64},
        "gpus": [
            {
                "address": "0000:41:00.0",
                "model": "h100-80gb",
                "iommu_group": 30,
                "numa_node": 0,
                "group_devices": [],
            },
            {
                "address": "0000:c1:00.0",
                "model": "h100-80gb",
                "iommu_group": 70,
                "numa_node": 1,
                "group_devices": [],
            },
        ],
    },
    "iommu-off": {
        "name": "oldbox",
        "cpu": {"sockets": 1, "cores_per_socket": 4, "threads_per_core": 1},
        "memory_mib": 15921,
        "numa_nodes": [{"id": 0, "cpus": "0-3", "memory_mib": 15921}],
        "hugepages": {"size_kib": 2048, "count": 0},
        "gpus": [
            {
                "address": "0000:01:00.0",
                "model": "l40s",
                "iommu_group": None,
                "numa_node": 0,
                "group_devices": [],
            }
        ],
    },
    "shared-group": {
        "name": "lab2",
        "cpu": {"sockets": 1, "cores_per_socket": 6, "threads_per_core": 2},
        "memory_mib": 31967,
        "numa_nodes": [{"id": 0, "cpus": "0-11", "memory_mib": 31967}],
        "hugepages": {"size_kib": 1048576, "count": 12},
        "gpus": [
            {
                "address": "0000:02:00.0",
                "model": "rtx-a6000",
                "iommu_group": 5,
                "numa_node": 0,
                "group_devices": [
                    {
                        "address": "0000:00:1c.0",
                        "class_code": "0604",
                        "description": "PCI bridge [8086:a33c]",
                    },
                    {
                        "address": "0000:02:00.1",
                        "class_code": "0403",
                        "description": "Audio device [10de:1aef]",
                    },
                    {
                        "address": "0000:02:00.2",
                        "class_code": "0106",
                        "description": "SATA controller [1b21:0612]",
                    },
                ],
            }
        ],
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_inventory_exact(name: str) -> None:
    assert inventory(HOSTS / name) == EXPECTED[name]


def test_every_named_fixture_is_on_disk() -> None:
    assert set(EXPECTED) <= set(ALL_FIXTURES)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_yaml_validates_against_host_model(name: str) -> None:
    text = render_inventory_yaml(HOSTS / name)
    entries = yaml.safe_load(text)
    assert isinstance(entries, list) and len(entries) == 1
    host = Host.model_validate(entries[0])
    assert entries[0] == inventory(HOSTS / name)
    assert host.cpu.logical_cpus == len(probe_host(HOSTS / name).online_cpus)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_yaml_pastes_under_hosts_with_indent(name: str) -> None:
    text = "hyperscaler:cluster:\n  hosts:\n" + render_inventory_yaml(HOSTS / name, "pasted", indent=4)
    hosts = yaml.safe_load(text)["hyperscaler:cluster"]["hosts"]
    assert Host.model_validate(hosts[0]).name == "pasted"


def test_yaml_comments_describe_gpus_and_group_devices() -> None:
    text = render_inventory_yaml(HOSTS / "intel-geforce")
    assert "# 10de:2684 NVIDIA GeForce RTX 4090 24GB, driver vfio-pci" in text
    assert "# 10de:22ba Audio device, driver vfio-pci: a function of the GPU card" in text
    assert "numa_node = -1" in text
    amd = render_inventory_yaml(HOSTS / "amd-2xh100")
    assert "# 10de:2331 NVIDIA H100 PCIe 80GB, driver nvidia" in amd
    assert "# node 1 hugepages: 1048576 kB: 32 free of 32" in amd
    shared = render_inventory_yaml(HOSTS / "shared-group")
    assert "# 1b21:0612 SATA controller, driver ahci: NOT part of the GPU card" in shared
    off = render_inventory_yaml(HOSTS / "iommu-off")
    assert "# WARNING: no IOMMU group" in off


def test_inventory_of_an_empty_root_still_validates(tmp_path: Path) -> None:
    entry = yaml.safe_load(render_inventory_yaml(tmp_path))[0]
    host = Host.model_validate(entry)
    assert host.name == "host1" and host.gpus == [] and host.numa_nodes[0].cpus == "0"
    assert any("no CPU topology" in n for n in probe_host(tmp_path).notes)


def test_host_name_is_shortened_and_repaired(tmp_path: Path) -> None:
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/hostname").write_text("GPU_Node7.example.org\n")
    assert inventory(tmp_path)["name"] == "gpu-node7"
    assert inventory(tmp_path, "given")["name"] == "given"


def test_unknown_and_amd_gpus_get_placeholder_models() -> None:
    assert pci_ids.gpu_model_name(0x10DE, 0x1EB8) == "nvidia-1eb8"
    assert pci_ids.gpu_model_name(0x1002, 0x74A1) == "amd-74a1"
    assert pci_ids.is_gpu(0x1002, "0380") is False and pci_ids.is_gpu(0x1002, "0302") is True
    assert pci_ids.is_gpu(0x8086, "0300") is False  # an integrated Intel GPU is not a passthrough target


def test_pci_id_table_agrees_with_catalog() -> None:
    for device, (name, _) in pci_ids.NVIDIA_GPUS.items():
        assert name in CATALOG, name
        assert device in CATALOG[name].device_ids, (hex(device), name)
    for model in CATALOG.values():
        for device in model.device_ids:
            assert pci_ids.gpu_model_name(pci_ids.NVIDIA, device) == model.name


# --- fixture trees -----------------------------------------------------------------------------------


def _snapshot(base: Path) -> dict[str, tuple[str, str]]:
    """Files and symlinks below base (empty directories are invisible to git, so they are ignored)."""
    found: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(base))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_file():
                found[rel] = ("file", path.read_text(encoding="utf-8"))
    return found


def test_regenerating_fixtures_gives_identical_trees(tmp_path: Path) -> None:
    builder = _load_builder()
    built = builder.build(tmp_path)
    assert built, "the builder wrote nothing"
    for directory in built:
        assert _snapshot(directory) == _snapshot(HOSTS / directory.name), directory.name


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_symlinks_are_relative_and_stay_inside(name: str) -> None:
    base = (HOSTS / name).resolve()
    for rel, (kind, target) in _snapshot(base).items():
        if kind == "link":
            assert not os.path.isabs(target), rel
            resolved = (base / rel).resolve()
            assert resolved.is_relative_to(base) and resolved.exists(), rel


# --- sysfs readers -----------------------------------------------------------------------------------


def test_pci_device_reads_the_kernel_layout() -> None:
    dev = sysfs.pci_device(HOSTS / "amd-2xh100", "0000:c1:00.0")
    assert dev == sysfs.PciDevice("0000:c1:00.0", 0x10DE, 0x2331, 0x030200, 1, 70, "vfio-pci")
    assert dev.class4 == "0302" and dev.vendor_device == "10de:2331" and dev.slot == "0000:c1:00"
    assert sysfs.pci_device(HOSTS / "amd-2xh100", "0000:99:00.0") is None


def test_unknown_numa_node_and_missing_links_are_none() -> None:
    dev = sysfs.pci_device(HOSTS / "iommu-off", "0000:01:00.0")
    assert dev is not None
    assert (dev.numa_node, dev.iommu_group, dev.driver) == (None, None, None)
    assert sysfs.iommu_groups(HOSTS / "iommu-off") == {}


def test_absolute_symlinks_stay_inside_the_root(tmp_path: Path) -> None:
    real = tmp_path / "sys/devices/pci0000:00/0000:00:02.0"
    real.mkdir(parents=True)
    for name, value in (
        ("vendor", "0x10de"),
        ("device", "0x2330"),
        ("class", "0x030200"),
        ("numa_node", "0"),
    ):
        (real / name).write_text(value + "\n")
    (real / "iommu_group").symlink_to("/sys/kernel/iommu_groups/9")
    (real / "driver").symlink_to("/sys/bus/pci/drivers/nvidia")
    (tmp_path / "sys/bus/pci/devices").mkdir(parents=True)
    (tmp_path / "sys/bus/pci/devices/0000:00:02.0").symlink_to("/sys/devices/pci0000:00/0000:00:02.0")
    dev = sysfs.pci_device(tmp_path, "0000:00:02.0")
    assert dev == sysfs.PciDevice("0000:00:02.0", 0x10DE, 0x2330, 0x030200, 0, 9, "nvidia")


def test_cpu_numa_hugepage_and_proc_readers() -> None:
    amd = HOSTS / "amd-2xh100"
    topo = sysfs.cpu_topology(amd)
    assert len(topo) == 64 and topo[33] == sysfs.LogicalCpu(33, 0, 0, 1, (1, 33))
    assert [n.id for n in sysfs.numa_nodes(amd)] == [0, 1]
    assert sysfs.hugepage_pools(amd, node=1) == [
        sysfs.HugepagePool(2048, 0, 0),
        sysfs.HugepagePool(1048576, 32, 32),
    ]
    assert sysfs.cpu_vendor(amd) == "AuthenticAMD" and "svm" in sysfs.cpu_flags(amd)
    assert sysfs.cmdline_params(amd)["hugepages"] == "64"
    assert sysfs.meminfo(amd)["Hugepagesize"] == 1048576


def test_cmdline_stops_at_double_dash(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cmdline").write_text("ro intel_iommu=on -- intel_iommu=off init-arg\n")
    assert sysfs.cmdline_params(tmp_path) == {"ro": "", "intel_iommu": "on"}


def test_pci_ids_lookup() -> None:
    root = HOSTS / "intel-geforce"
    assert sysfs.pci_ids_name(root, 0x10DE, 0x2684) == "NVIDIA Corporation AD102 [GeForce RTX 4090]"
    assert sysfs.pci_ids_name(root, 0x10DE, 0x9999) is None
    assert sysfs.pci_ids_name(HOSTS / "amd-2xh100", 0x10DE, 0x2331) is None  # no pci.ids in that tree


# --- doctor ------------------------------------------------------------------------------------------


def test_iommu_off_fails_iommu_checks_and_firmware() -> None:
    results = _by_name(run_doctor(HOSTS / "iommu-off", None, None))
    assert results["iommu kernel parameters"].status == "fail"
    assert "intel_iommu=on" in results["iommu kernel parameters"].fix
    assert results["iommu groups"].status == "fail"
    assert "BIOS" in results["iommu groups"].fix
    assert results["gpu 0000:01:00.0 iommu group"].status == "fail"
    assert results["uefi firmware"].status == "fail" and "apt-get install ovmf" in results["uefi firmware"].fix
    assert exit_code(list(results.values())) == 1


def test_shared_group_fails_naming_the_sata_controller() -> None:
    results = _by_name(run_doctor(HOSTS / "shared-group", _spec(_self_host("shared-group")), "lab2"))
    isolation = results["gpu 0000:02:00.0 group isolation"]
    assert isolation.status == "fail"
    assert "0000:02:00.2" in isolation.message and "SATA controller" in isolation.message
    assert "0000:00:1c.0" not in isolation.message and "0000:02:00.1" not in isolation.message
    assert "ACS" in isolation.fix and "slot" in isolation.fix
    assert results["gpu 0000:02:00.0 driver"].status == "pass"
    assert results["kvm"].status == "fail" and results["cpu virtualization"].status == "warn"


def test_amd_host_warns_about_the_nvidia_driver() -> None:
    results = _by_name(run_doctor(HOSTS / "amd-2xh100", _spec(_self_host("amd-2xh100")), None))
    nvidia = results["gpu 0000:41:00.0 driver"]
    assert nvidia.status == "warn" and "nvidia" in nvidia.message
    assert (
        nvidia.fix
        == "managed=yes will detach it at VM start; or bind with driverctl set-override 0000:41:00.0 vfio-pci"
    )
    assert results["gpu 0000:c1:00.0 driver"].status == "pass"
    assert results["iommu kernel parameters"].status == "pass"  # AMD: on by default, no amd_iommu=on needed
    assert exit_code(list(results.values())) == 0


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_own_inventory_matches_in_doctor(name: str) -> None:
    """A host entry printed by inventory never disagrees with doctor about presence, group or NUMA node."""
    host = _self_host(name)
    results = run_doctor(HOSTS / name, _spec(host), host.name)
    for result in results:
        if result.name.endswith((" present", " group devices", " numa node")):
            assert result.status == "pass", result
        if result.name.endswith(" iommu group") and sysfs.iommu_groups(HOSTS / name):
            assert result.status == "pass", result


def test_configured_gpu_missing_from_host() -> None:
    base = _self_host("amd-2xh100")
    extra = Gpu(address="0000:81:00.0", model="h100-80gb", iommu_group=50, numa_node=1)
    host = base.model_copy(update={"gpus": [*base.gpus, extra]})
    results = _by_name(run_doctor(HOSTS / "amd-2xh100", _spec(host), "gpu-a01"))
    missing = results["gpu 0000:81:00.0 present"]
    assert missing.status == "fail" and "no PCI device" in missing.message and "inventory" in missing.fix
    assert "gpu 0000:81:00.0 driver" not in results


def test_configured_gpu_with_wrong_group_model_and_node() -> None:
    wrong = Gpu(address="0000:c1:00.0", model="a100-80gb", iommu_group=71, numa_node=0)
    host = _self_host("amd-2xh100", gpus=[wrong.model_dump()])
    results = _by_name(run_host_checks(HOSTS / "amd-2xh100", host))
    assert results["gpu 0000:c1:00.0 present"].status == "warn"
    assert "set model: h100-80gb" in results["gpu 0000:c1:00.0 present"].fix
    group = results["gpu 0000:c1:00.0 iommu group"]
    assert group.status == "fail" and "set iommu_group: 70" in group.fix
    assert results["gpu 0000:c1:00.0 numa node"].status == "warn"


def test_group_devices_out_of_date_warns() -> None:
    gpu = Gpu(address="0000:01:00.0", model="rtx-4090", iommu_group=12)
    results = _by_name(run_host_checks(HOSTS / "intel-geforce", _self_host("intel-geforce", gpus=[gpu.model_dump()])))
    assert results["gpu 0000:01:00.0 group devices"].status == "warn"
    assert "0000:01:00.1" in results["gpu 0000:01:00.0 group devices"].message


def test_host_identity_warns_on_another_machine() -> None:
    other = _self_host("intel-geforce", name="gpu-a01")
    results = _by_name(run_host_checks(HOSTS / "intel-geforce", other))
    assert results["host identity"].status == "warn" and "'ws1'" in results["host identity"].message
    same = _by_name(run_host_checks(HOSTS / "intel-geforce", _self_host("intel-geforce")))
    assert same["host identity"].status == "pass"


def test_unknown_host_name_fails() -> None:
    results = run_doctor(HOSTS / "intel-geforce", _spec(_self_host("intel-geforce")), "nope")
    assert results[0].name == "host in stack file" and results[0].status == "fail" and "ws1" in results[0].message


def test_cmdline_variants(tmp_path: Path) -> None:
    def cmdline_check(vendor: str, cmdline: str, groups: bool = False) -> CheckResult:
        (tmp_path / "proc").mkdir(exist_ok=True)
        (tmp_path / "proc/cmdline").write_text(cmdline + "\n")
        (tmp_path / "proc/cpuinfo").write_text(f"processor\t: 0\nvendor_id\t: {vendor}\n")
        group = tmp_path / "sys/kernel/iommu_groups/0/devices"
        if groups:
            group.mkdir(parents=True, exist_ok=True)
        return _by_name(run_host_checks(tmp_path, None))["iommu kernel parameters"]

    assert cmdline_check("AuthenticAMD", "ro amd_iommu=off").status == "fail"
    assert cmdline_check("AuthenticAMD", "ro iommu=off").status == "fail"
    assert cmdline_check("GenuineIntel", "ro intel_iommu=off").status == "fail"
    assert cmdline_check("GenuineIntel", "ro intel_iommu=on,sm_on").status == "pass"
    assert cmdline_check("GenuineIntel", "ro", groups=True).status == "warn"


def test_hugepages_against_need_and_stack_file() -> None:
    root = HOSTS / "shared-group"
    host = _self_host("shared-group")
    ok = _by_name(run_host_checks(root, host, hugepages_needed_mib=12 * 1024))["hugepages"]
    assert ok.status == "pass"
    short = _by_name(run_host_checks(root, host, hugepages_needed_mib=20 * 1024))["hugepages"]
    assert short.status == "fail" and "hugepages=24" in short.fix  # 16 reserved, 4 in use, 20 more needed
    stale = _self_host("shared-group", hugepages=Hugepages(size_kib=1048576, count=16).model_dump())
    assert _by_name(run_host_checks(root, stale))["hugepages"].status == "warn"
    small = _by_name(run_host_checks(HOSTS / "intel-geforce", None, hugepages_needed_mib=20000))["hugepages"]
    assert small.status == "fail" and "hugepages-2048kB/nr_hugepages" in small.fix


def test_memory_and_disk(tmp_path: Path) -> None:
    root = HOSTS / "amd-2xh100"
    assert _by_name(run_host_checks(root, None, memory_needed_mib=400_000))["memory"].status == "pass"
    assert _by_name(run_host_checks(root, None, memory_needed_mib=500_000))["memory"].status == "fail"
    assert _by_name(run_host_checks(root, None))["pool disk space"].status == "warn"  # no pool dir in fixture
    pool = tmp_path / "var/lib/libvirt/images/hyperscaler"
    pool.mkdir(parents=True)
    assert _by_name(run_host_checks(tmp_path, None, disk_needed_gib=1))["pool disk space"].status == "pass"
    assert _by_name(run_host_checks(tmp_path, None, disk_needed_gib=10**9))["pool disk space"].status == "fail"


def test_libvirt_only_checked_live() -> None:
    calls: list[Sequence[str]] = []

    def ok(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        calls.append(argv)
        return 0, "Compiled against library: libvirt 9.0.0\nRunning hypervisor: QEMU 7.2.0\n", ""

    def refused(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        return 1, "", "error: failed to connect to the hypervisor\nerror: Failed to connect socket\n"

    def hangs(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        raise subprocess.TimeoutExpired(list(argv), timeout)

    root = HOSTS / "intel-geforce"
    fixture = _by_name(run_host_checks(root, None, runner=ok))["libvirt"]
    assert fixture.status == "warn" and "not checked against a fixture root" in fixture.message and not calls
    live = _by_name(run_host_checks(root, None, live=True, runner=ok))
    assert live["libvirt"].status == "pass" and "QEMU 7.2.0" in live["libvirt"].message
    assert calls == [["virsh", "-c", "qemu:///system", "version"]]
    assert live["kvm"].status == "fail"  # live mode wants a character device, the fixture has a plain file
    assert _by_name(run_host_checks(root, None, live=True, runner=refused))["libvirt"].status == "fail"
    assert _by_name(run_host_checks(root, None, live=True, runner=hangs))["libvirt"].status == "fail"


def test_report_format_and_exit_code() -> None:
    results = [
        CheckResult("kvm", "pass", "/dev/kvm is present"),
        CheckResult("hugepages", "warn", "few", "echo 8 > x"),
        CheckResult("iommu groups", "fail", "empty", "enable VT-d"),
    ]
    assert format_report(results) == (
        "PASS  kvm: /dev/kvm is present\n"
        "WARN  hugepages: few\n"
        "      fix: echo 8 > x\n"
        "FAIL  iommu groups: empty\n"
        "      fix: enable VT-d\n"
        "1 passed, 1 warnings, 1 failed\n"
    )
    assert exit_code(results) == 1 and exit_code(results[:2]) == 0


def test_clean_host_has_no_failures() -> None:
    results = run_doctor(HOSTS / "intel-geforce", _spec(_self_host("intel-geforce")), "ws1")
    assert exit_code(results) == 0
    assert {r.name for r in results if r.status != "pass"} == {"libvirt", "pool disk space"}
    assert doctor.DEFAULT_URI in _by_name(results)["libvirt"].message
