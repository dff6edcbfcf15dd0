"""Size presets. A stack file names one with `preset:` and overrides any field; mappings merge key by
key, lists replace whole (so a pasted `hosts:` from `hyperscaler inventory` replaces the example host)."""

from __future__ import annotations

import copy
from typing import Any

_DEV_HOST = {
    "name": "ws1",
    "cpu": {"sockets": 1, "cores_per_socket": 8, "threads_per_core": 2},
    "memory_mib": 32768,
    "reserve": {"cpus": "0-1", "memory_mib": 4096},
}

PRESETS: dict[str, dict[str, Any]] = {
    # One workstation, no GPU: controller, 2 compute and 1 storage node in 13 GiB of RAM.
    "dev": {
        "hosts": [_DEV_HOST],
        "controller": {"vcpus": 2, "memory_mib": 3072, "disk_gib": 20, "state_disk_gib": 5},
        "compute": [{"name": "cpu", "count": 2, "vcpus": 2, "memory_mib": 4096, "disk_gib": 20}],
        # One small workstation: NFS from the storage node's one data volume; BeeGFS would buy nothing.
        "storage": {
            "count": 1,
            "vcpus": 1,
            "memory_mib": 2048,
            "disk_gib": 10,
            "data_disks_gib": [20],
            "backend": "nfs",
        },
    },
    # One GPU workstation (2 NUMA nodes) passing through 2 datacenter GPUs, one per compute VM, with MIG;
    # monitored.
    "workstation": {
        "hosts": [
            {
                "name": "ws1",
                "cpu": {"sockets": 1, "cores_per_socket": 16, "threads_per_core": 2},
                "memory_mib": 131072,
                "numa_nodes": [
                    {"id": 0, "cpus": "0-7,16-23", "memory_mib": 65536},
                    {"id": 1, "cpus": "8-15,24-31", "memory_mib": 65536},
                ],
                "hugepages": {"size_kib": 1048576, "count": 100},
                "reserve": {"cpus": "0,16", "memory_mib": 8192},
                "gpus": [
                    {"address": "0000:41:00.0", "model": "h100-80gb", "iommu_group": 30, "numa_node": 0},
                    {"address": "0000:c1:00.0", "model": "h100-80gb", "iommu_group": 70, "numa_node": 1},
                ],
            }
        ],
        "controller": {"vcpus": 2, "memory_mib": 4096, "disk_gib": 30, "state_disk_gib": 10},
        "compute": [
            {
                "name": "gpu",
                "count": 2,
                "vcpus": 12,
                "memory_mib": 49152,
                "disk_gib": 100,
                "gpus_per_node": 1,
                "topology": {"sockets": 1, "cores": 6, "threads": 2},
            }
        ],
        "storage": {"count": 1, "vcpus": 2, "memory_mib": 4096, "disk_gib": 20, "data_disks_gib": [200]},
        # Per H100: 3g at slices 4-7, 2g at 0-1, the two 1g at 2 and 3 (docs/mig.md).
        "mig": {"layouts": [{"group": "gpu", "profiles": {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 2}}]},
        "monitoring": {"enabled": True},
        "containers": {"enabled": True},
    },
    # Three hypervisors on a shared L2 (host bridges): services on hv1, CPU nodes on hv2, GPU nodes on hv3; monitored.
    "cluster": {
        "hosts": [
            {
                "name": f"hv{i}",
                "uri": "qemu:///system" if i == 1 else f"qemu+ssh://root@hv{i}/system",
                "cpu": {"sockets": 2, "cores_per_socket": 16, "threads_per_core": 2},
                "memory_mib": 262144,
                "numa_nodes": [
                    {"id": 0, "cpus": "0-15,32-47", "memory_mib": 131072},
                    {"id": 1, "cpus": "16-31,48-63", "memory_mib": 131072},
                ],
                "reserve": {"cpus": "0-1,32-33", "memory_mib": 16384},
                # 4 GPU VMs x 56 GiB, 112 pages per NUMA node (boot-time pages are spread evenly over nodes).
                **({"hugepages": {"size_kib": 1048576, "count": 224}} if i == 3 else {}),
                "gpus": [
                    {"address": f"0000:{bus}:00.0", "model": "a100-80gb", "iommu_group": grp, "numa_node": node}
                    for bus, grp, node in (("17", 20, 0), ("31", 24, 0), ("b1", 60, 1), ("ca", 64, 1))
                ]
                if i == 3
                else [],
            }
            for i in (1, 2, 3)
        ],
        "networks": {
            "management": {"mode": "bridge", "bridge": "br-mgmt", "cidr": "10.77.0.0/22", "dns_servers": ["10.77.0.1"]},
            "interconnect": {"mode": "bridge", "bridge": "br-hpc", "cidr": "10.78.0.0/22"},
        },
        "controller": {"host": "hv1", "vcpus": 8, "memory_mib": 16384, "disk_gib": 50, "state_disk_gib": 50},
        "storage": {
            "host": "hv1",
            "count": 2,
            "vcpus": 8,
            "memory_mib": 32768,
            "disk_gib": 20,
            "data_disks_gib": [1000, 1000],
        },
        "compute": [
            {"name": "cpu", "count": 4, "host": "hv2", "vcpus": 14, "memory_mib": 57344, "disk_gib": 50},
            {
                "name": "gpu",
                "count": 4,
                "host": "hv3",
                "vcpus": 14,
                "memory_mib": 57344,
                "disk_gib": 100,
                "gpus_per_node": 1,
            },
        ],
        "monitoring": {"enabled": True},
        "containers": {"enabled": True},
    },
}


# Mappings that are one value, replaced whole: a MIG layout is a set of instances, and merging a stack's
# {1g.10gb: 7} into a preset's {3g.40gb: 1, ...} would give a layout nobody wrote.
WHOLE_MAPPINGS = (("mig", "named_layouts", "*"),)


def _whole(path: tuple[str, ...]) -> bool:
    return any(len(p) == len(path) and all(a in ("*", b) for a, b in zip(p, path, strict=True)) for p in WHOLE_MAPPINGS)


def deep_merge(base: dict[str, Any], override: dict[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not _whole((*path, str(key))):
            out[key] = deep_merge(out[key], value, (*path, str(key)))
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_preset(raw: dict[str, Any]) -> dict[str, Any]:
    """Merge the stack's values over its preset. Unknown presets are left for the schema to report."""
    preset = raw.get("preset")
    if isinstance(preset, str) and preset in PRESETS:
        return deep_merge(PRESETS[preset], raw)
    return raw
