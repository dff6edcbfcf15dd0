"""How the devices of a GPU's IOMMU group relate to the GPU.

One classification for the stack-file checks (config/checks_gpu.py), the domain renderer
(render/placement.py) and the host probe (`hyperscaler inventory` / `doctor`), so all three agree on
what goes to the VM with a GPU. The probe sees sysfs, the checks see the stack file's group_devices;
both give the same three facts: the GPU's address, the member's address and its 4-hex-digit class.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

GroupRole = Literal["companion", "gpu", "bridge", "foreign"]

# Classes a GPU board exposes as extra functions of its own slot: VGA/3D/display, HDMI/DP audio,
# USB-C controller and its UCSI serial-bus function.
COMPANION_CLASSES = frozenset({"0300", "0302", "0380", "0403", "0c03", "0c80"})
# Display classes; in *another* slot of the same group they are a second GPU, not a companion.
DISPLAY_CLASSES = frozenset({"0300", "0302", "0380"})
# Host and PCI(e) bridges may stay with the host: vfio accepts a group whose bridges have no driver
# or the pcieport driver.
BRIDGE_CLASSES = frozenset({"0600", "0604"})

CLASS_NAMES: dict[str, str] = {
    "0106": "SATA controller",
    "0108": "NVMe controller",
    "0200": "Ethernet controller",
    "0207": "InfiniBand controller",
    "0300": "VGA controller",
    "0302": "3D controller",
    "0380": "Display controller",
    "0403": "Audio device",
    "0600": "Host bridge",
    "0604": "PCI bridge",
    "0c03": "USB controller",
    "0c05": "SMBus controller",
    "0c80": "Serial bus controller (USB-C UCSI)",
}


def slot_of(address: str) -> str:
    """DDDD:BB:SS of a DDDD:BB:SS.F address."""
    return address.rsplit(".", 1)[0]


def group_member_role(gpu_address: str, member_address: str, member_class4: str) -> GroupRole:
    """What another device in a GPU's IOMMU group is to that GPU.

    companion: a function of the same card; passed through with the GPU.
    gpu: a display device in another slot (e.g. a second GPU behind the same switch); the group can
         only go whole to one VM, so both GPUs must be assigned to the same VM.
    bridge: stays with the host; vfio does not need it.
    foreign: anything else (SATA, NIC...): it would have to leave the host too, so the group is unusable.
    """
    same_slot = slot_of(gpu_address) == slot_of(member_address)
    if same_slot and member_class4 in COMPANION_CLASSES:
        return "companion"
    if member_class4 in DISPLAY_CLASSES:
        return "gpu"
    if member_class4 in BRIDGE_CLASSES:
        return "bridge"
    return "foreign"


def class_name(class4: str) -> str:
    return CLASS_NAMES.get(class4, f"class {class4}" if class4 else "unknown class")


def passthrough_functions(gpu_address: str, group_devices: Iterable[tuple[str, str]]) -> list[str]:
    """Every function that goes to the VM with one GPU: the GPU and its companions, sorted.

    group_devices are (address, class) pairs of the other devices in the GPU's IOMMU group."""
    extra = [a for a, cls in group_devices if group_member_role(gpu_address, a, cls) == "companion"]
    return sorted({gpu_address, *extra})
