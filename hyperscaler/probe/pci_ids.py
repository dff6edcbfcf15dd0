"""PCI vendor/device IDs of GPUs -> catalog model names (config/catalog.py), for `inventory`.

Device IDs follow NVIDIA's mig-parted device filters and the PCI ID database; each entry also has
the marketing name printed in inventory comments. tests/unit/test_probe.py checks that this table
and the catalog agree, so adding a GPU to one without the other fails the tests.
"""

from __future__ import annotations

# The group classification lives in config (the bottom layer) so the checks agree with the probe.
from config.pci import CLASS_NAMES, class_name, group_member_role

__all__ = [
    "AMD",
    "CLASS_NAMES",
    "GPU_CLASSES",
    "NVIDIA",
    "NVIDIA_GPUS",
    "class_name",
    "gpu_marketing_name",
    "gpu_model_name",
    "group_member_role",
    "is_gpu",
]

NVIDIA = 0x10DE
AMD = 0x1002

# device ID -> (catalog model, human name)
NVIDIA_GPUS: dict[int, tuple[str, str]] = {
    0x20B0: ("a100-40gb", "NVIDIA A100 SXM4 40GB"),
    0x20B1: ("a100-40gb", "NVIDIA A100 PCIe 40GB"),
    0x20F1: ("a100-40gb", "NVIDIA A100 PCIe 40GB"),
    0x20F6: ("a100-40gb", "NVIDIA A800 40GB"),
    0x20B2: ("a100-80gb", "NVIDIA A100 SXM4 80GB"),
    0x20B5: ("a100-80gb", "NVIDIA A100 PCIe 80GB"),
    0x20F3: ("a100-80gb", "NVIDIA A800 SXM4 80GB"),
    0x20F5: ("a100-80gb", "NVIDIA A800 80GB"),
    0x20B7: ("a30", "NVIDIA A30 24GB"),
    0x2330: ("h100-80gb", "NVIDIA H100 SXM5 80GB"),
    0x2331: ("h100-80gb", "NVIDIA H100 PCIe 80GB"),
    0x2322: ("h100-80gb", "NVIDIA H800 PCIe 80GB"),
    0x2324: ("h100-80gb", "NVIDIA H800 80GB"),
    0x2321: ("h100-nvl", "NVIDIA H100 NVL 94GB"),
    0x233A: ("h100-nvl", "NVIDIA H800 NVL 94GB"),
    0x2335: ("h200", "NVIDIA H200 SXM 141GB"),
    0x233B: ("h200", "NVIDIA H200 NVL 141GB"),
    0x2329: ("h20", "NVIDIA H20 96GB"),
    0x2342: ("gh200", "NVIDIA GH200 96GB"),
    0x2348: ("gh200-144gb", "NVIDIA GH200 144GB HBM3e"),
    0x2901: ("b200", "NVIDIA B200 180GB"),
    0x26B9: ("l40s", "NVIDIA L40S 48GB"),
    0x2230: ("rtx-a6000", "NVIDIA RTX A6000 48GB"),
    0x2BB5: ("rtx-pro-6000", "NVIDIA RTX PRO 6000 Blackwell 96GB"),
    0x2684: ("rtx-4090", "NVIDIA GeForce RTX 4090 24GB"),
    0x2204: ("rtx-3090", "NVIDIA GeForce RTX 3090 24GB"),
}

# PCI classes (base class + subclass) a GPU presents: VGA controller and 3D controller.
GPU_CLASSES = frozenset({"0300", "0302"})


def is_gpu(vendor: int | None, class4: str) -> bool:
    """NVIDIA or AMD function whose class says VGA or 3D controller."""
    return vendor in (NVIDIA, AMD) and class4 in GPU_CLASSES


def gpu_model_name(vendor: int | None, device: int | None) -> str:
    """The catalog model for a GPU, or 'nvidia-<device>' / 'amd-<device>' when it is not known."""
    dev = device if device is not None else 0
    if vendor == NVIDIA:
        known = NVIDIA_GPUS.get(dev)
        return known[0] if known else f"nvidia-{dev:04x}"
    if vendor == AMD:
        return f"amd-{dev:04x}"
    return f"{vendor or 0:04x}-{dev:04x}"


def gpu_marketing_name(vendor: int | None, device: int | None) -> str | None:
    if vendor == NVIDIA and device is not None and device in NVIDIA_GPUS:
        return NVIDIA_GPUS[device][1]
    return None
