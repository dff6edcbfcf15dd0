"""GPU models the program knows: memory (for large-BAR sizing), PCI IDs, MIG family and SLURM type.

Facts from NVIDIA's MIG user guide and mig-parted's device filters (see docs/gpu.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuModel:
    name: str
    description: str
    memory_gib: int
    device_ids: tuple[int, ...]  # NVIDIA vendor 0x10de
    consumer: bool = False  # GeForce: VGA + audio (+USB) functions; may need kvm hidden for old drivers
    mig_family: str | None = None  # key into the MIG profile tables; None = no MIG
    # GRES Type in slurm.conf/gres.conf. With AutoDetect=nvml SLURM requires it to be a substring of the
    # NVML name lower-cased, spaces to '_', cut at the first '-' ("NVIDIA A100-SXM4-40GB" -> "nvidia_a100").
    slurm_type: str = ""


CATALOG: dict[str, GpuModel] = {
    m.name: m
    for m in (
        GpuModel(
            "a100-40gb",
            "NVIDIA A100 40GB",
            40,
            (0x20B0, 0x20B1, 0x20F1, 0x20F6),
            mig_family="a100-40gb",
            slurm_type="a100",
        ),
        GpuModel(
            "a100-80gb", "NVIDIA A100 80GB", 80, (0x20B2, 0x20B5, 0x20F3, 0x20F5), mig_family="80gb", slurm_type="a100"
        ),
        GpuModel("a30", "NVIDIA A30 24GB", 24, (0x20B7,), mig_family="a30", slurm_type="a30"),
        GpuModel(
            "h100-80gb", "NVIDIA H100 80GB", 80, (0x2330, 0x2331, 0x2322, 0x2324), mig_family="80gb", slurm_type="h100"
        ),
        GpuModel(
            "h100-nvl", "NVIDIA H100 NVL 94GB", 94, (0x2321, 0x233A), mig_family="h100-94gb", slurm_type="h100_nvl"
        ),
        GpuModel("h200", "NVIDIA H200 141GB", 141, (0x2335, 0x233B), mig_family="h200", slurm_type="h200"),
        GpuModel("b200", "NVIDIA B200 180GB", 180, (0x2901,), mig_family="b200", slurm_type="b200"),
        GpuModel("l40s", "NVIDIA L40S 48GB", 48, (0x26B9,), slurm_type="l40s"),
        GpuModel("rtx-a6000", "NVIDIA RTX A6000 48GB", 48, (0x2230,), slurm_type="rtx_a6000"),
        GpuModel(
            "rtx-pro-6000",
            "NVIDIA RTX PRO 6000 Blackwell 96GB",
            96,
            (0x2BB5,),
            mig_family="rtx-pro-6000",
            slurm_type="rtx_pro_6000",
        ),
        GpuModel("rtx-4090", "NVIDIA GeForce RTX 4090 24GB", 24, (0x2684,), consumer=True, slurm_type="rtx_4090"),
        GpuModel("rtx-3090", "NVIDIA GeForce RTX 3090 24GB", 24, (0x2204,), consumer=True, slurm_type="rtx_3090"),
    )
}


def gpu_model(name: str) -> GpuModel | None:
    return CATALOG.get(name)
