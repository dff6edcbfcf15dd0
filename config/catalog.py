"""GPU models the program knows, as data: memory (large-BAR sizing), PCI IDs, SLURM type and MIG geometry.

MIG facts come from NVIDIA's MIG user guide (supported-mig-profiles, getting-started-with-mig and
deployment-considerations pages), `nvidia-smi mig -lgip/-lgipp` captures and mig-parted's
deployments/systemd/config-default.yaml (device filters, profile names per GPU); docs/mig.md lists what
each table rests on. Where a value was not seen on the GPU itself, the model's `mig.unverified` says so.

The placement model (config/mig.py reads it): a GPU has `memory_slices` memory slices numbered from 0;
an instance of a profile occupies `memory_slices` consecutive slices starting at one of the profile's
`starts`; instances never overlap; at most `max_count` of a profile and at most one profile with media
extensions (`+me`, `+me.all`) per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MigProfile:
    name: str  # as nvidia-smi, mig-parted and SLURM's GRES type spell it: "3g.40gb", "1g.10gb+me"
    gi_profile_id: int  # the GPU instance profile ID `nvidia-smi mig -lgip` lists (and -cgi accepts)
    compute_slices: int
    memory_slices: int
    starts: tuple[int, ...]  # the memory slice an instance may start at (`-lgipp` placements)
    max_count: int  # instances of this profile one GPU can hold

    @property
    def media_extensions(self) -> bool:
        """+me and +me.all take the GPU's media engines (OFA, JPEG...): one such instance per GPU."""
        return "+me" in self.name


@dataclass(frozen=True)
class MigGeometry:
    memory_slices: int
    compute_slices: int
    profiles: tuple[MigProfile, ...]
    # Ampere: enabling or disabling MIG resets the GPU, which the hypervisor cannot do under passthrough, so
    # the VM reboots; the mode is kept in the InfoROM. Hopper and later: no reset, and the mode is lost at
    # every reboot or driver reload, so it is applied again at boot.
    mode_change_needs_reset: bool
    mode_persists: bool
    min_driver: str
    unverified: str = ""  # what of this table was not seen on the GPU itself

    def profile(self, name: str) -> MigProfile | None:
        return next((p for p in self.profiles if p.name == name), None)

    @property
    def profile_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.profiles)


@dataclass(frozen=True)
class GpuModel:
    name: str
    description: str
    memory_gib: int
    device_ids: tuple[int, ...]  # NVIDIA vendor 0x10de
    consumer: bool = False  # GeForce: VGA + audio (+USB) functions; may need kvm hidden for old drivers
    # GRES Type for a whole GPU. With AutoDetect=nvml SLURM requires it to be a substring of the NVML name
    # lower-cased, spaces to '_', cut at the first '-' ("NVIDIA A100-SXM4-40GB" -> "nvidia_a100").
    slurm_type: str = ""
    mig: MigGeometry | None = None  # None: the GPU has no MIG

    @property
    def mig_device_filter(self) -> tuple[str, ...]:
        """mig-parted's device-filter spelling of the PCI IDs: device ID then vendor, "0x233010DE"."""
        return tuple(f"0x{device:04X}10DE" for device in self.device_ids)


@dataclass(frozen=True)
class Generation:
    mode_change_needs_reset: bool
    mode_persists: bool


AMPERE = Generation(mode_change_needs_reset=True, mode_persists=True)
HOPPER_AND_LATER = Generation(mode_change_needs_reset=False, mode_persists=False)
# GPU instance profile IDs of the 8-slice class: 1g, 1g+me, 1g with twice the memory, 2g, 3g, 4g, 7g.
SEVEN_SLICE_IDS = (19, 20, 15, 14, 9, 5, 0)


def _geometry(
    memory: int,
    compute: int,
    profiles: tuple[MigProfile, ...],
    generation: Generation,
    min_driver: str,
    unverified: str,
) -> MigGeometry:
    return MigGeometry(
        memory,
        compute,
        profiles,
        mode_change_needs_reset=generation.mode_change_needs_reset,
        mode_persists=generation.mode_persists,
        min_driver=min_driver,
        unverified=unverified,
    )


def _seven_slice(
    names: tuple[str, str, str, str, str, str], generation: Generation, min_driver: str, unverified: str = ""
) -> MigGeometry:
    """The 8 memory / 7 compute slice class (A100, H100, H200, GH200, H20, B200): identical placements and
    limits, only the memory in the names differs (MIG guide, supported-mig-profiles; `-lgipp`). `names`:
    1g, 1g with twice the memory, 2g, 3g, 4g, 7g. A 1g instance never starts at slice 7, so seven 1g
    instances leave one memory slice unused."""
    one, one_double, two, three, four, seven = names
    i1, i1me, i1x2, i2, i3, i4, i7 = SEVEN_SLICE_IDS
    profiles = (
        MigProfile(one, i1, 1, 1, (0, 1, 2, 3, 4, 5, 6), 7),
        MigProfile(f"{one}+me", i1me, 1, 1, (0, 1, 2, 3, 4, 5, 6), 1),
        MigProfile(one_double, i1x2, 1, 2, (0, 2, 4, 6), 4),
        MigProfile(two, i2, 2, 2, (0, 2, 4), 3),
        MigProfile(three, i3, 3, 4, (0, 4), 2),
        MigProfile(four, i4, 4, 4, (0,), 1),
        MigProfile(seven, i7, 7, 8, (0,), 1),
    )
    return _geometry(8, 7, profiles, generation, min_driver, unverified)


def _four_slice(
    profiles: tuple[MigProfile, ...], generation: Generation, min_driver: str, unverified: str = ""
) -> MigGeometry:
    return _geometry(4, 4, profiles, generation, min_driver, unverified)


_A30 = _four_slice(
    (  # from an `nvidia-smi mig -lgip/-lgipp` capture on an A30
        MigProfile("1g.6gb", 14, 1, 1, (0, 1, 2, 3), 4),
        MigProfile("1g.6gb+me", 21, 1, 1, (0, 1, 2, 3), 1),
        MigProfile("2g.12gb", 5, 2, 2, (0, 2), 2),
        MigProfile("2g.12gb+me", 6, 2, 2, (0, 2), 1),  # R525 and later
        MigProfile("4g.24gb", 0, 4, 4, (0,), 1),
    ),
    AMPERE,
    "R460 (>= 460.73.01); 1g.6gb+me needs R470, 2g.12gb+me R525",
)

# IDs from a driver 580.105.08 `-lgip` capture; placements were not captured: they are taken to be the
# A30's (the other 4-slice GPU), and how +me.all, +gfx and -me profiles combine beyond "one +me" is unknown.
_RTX_PRO_6000 = _four_slice(
    (
        MigProfile("1g.24gb", 14, 1, 1, (0, 1, 2, 3), 4),
        MigProfile("1g.24gb+me", 21, 1, 1, (0, 1, 2, 3), 1),
        MigProfile("1g.24gb+gfx", 47, 1, 1, (0, 1, 2, 3), 4),
        MigProfile("1g.24gb+me.all", 65, 1, 1, (0, 1, 2, 3), 1),
        MigProfile("1g.24gb-me", 67, 1, 1, (0, 1, 2, 3), 4),
        MigProfile("2g.48gb", 5, 2, 2, (0, 2), 2),
        MigProfile("2g.48gb+gfx", 35, 2, 2, (0, 2), 2),
        MigProfile("2g.48gb+me.all", 64, 2, 2, (0, 2), 1),
        MigProfile("2g.48gb-me", 66, 2, 2, (0, 2), 2),
        MigProfile("4g.96gb", 0, 4, 4, (0,), 1),
        MigProfile("4g.96gb+gfx", 32, 4, 4, (0,), 1),
    ),
    HOPPER_AND_LATER,
    "R575 (>= 575.51.03); vBIOS >= 98.02.55.00.00, and Workstation/Max-Q editions switched to compute mode "
    "with DisplayModeSelector first",
    "placements (assumed equal to the A30's) and the combination rules of +me.all, +gfx and -me",
)

CATALOG: dict[str, GpuModel] = {
    m.name: m
    for m in (
        GpuModel(
            "a100-40gb",
            "NVIDIA A100 40GB",
            40,
            (0x20B0, 0x20B1, 0x20F1, 0x20F6),
            slurm_type="a100",
            mig=_seven_slice(
                ("1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
                AMPERE,
                "R450 (>= 450.80.02); 1g.5gb+me needs R470, 1g.10gb R525",
            ),
        ),
        GpuModel(
            "a100-80gb",
            "NVIDIA A100 80GB",
            80,
            (0x20B2, 0x20B5, 0x20F3, 0x20F5),
            slurm_type="a100",
            mig=_seven_slice(
                ("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
                AMPERE,
                "R450 (>= 450.80.02)",
            ),
        ),
        GpuModel(
            "a30",
            "NVIDIA A30 24GB",
            24,
            (0x20B7,),
            slurm_type="a30",
            mig=_A30,
        ),
        GpuModel(
            "h100-80gb",
            "NVIDIA H100 80GB",
            80,
            (0x2330, 0x2331, 0x2322, 0x2324),
            slurm_type="h100",
            mig=_seven_slice(
                ("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
                HOPPER_AND_LATER,
                "R525 (>= 525.85.12)",
            ),
        ),
        GpuModel(
            "h100-nvl",
            "NVIDIA H100 NVL 94GB",
            94,
            (0x2321, 0x233A),
            slurm_type="h100_nvl",
            mig=_seven_slice(
                ("1g.12gb", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),
                HOPPER_AND_LATER,
                "R525 (>= 525.85.12)",
            ),
        ),
        GpuModel(
            "h200",
            "NVIDIA H200 141GB",
            141,
            (0x2335, 0x233B),
            slurm_type="h200",
            mig=_seven_slice(
                ("1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
                HOPPER_AND_LATER,
                "R550 (>= 550.90.07)",
                "profile IDs 15, 9 and 5 (19, 20, 14 and 0 were seen in an -lgip capture)",
            ),
        ),
        GpuModel(
            "gh200",
            "NVIDIA GH200 96GB (H100 96GB HBM3)",
            96,
            (0x2342,),
            slurm_type="gh200",
            mig=_seven_slice(
                ("1g.12gb", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"),
                HOPPER_AND_LATER,
                "not published for GH200 in the MIG guide; R535 or later",
                "profile IDs (taken from the 8-slice class); 0x2342 as the GH200's ID is read from the PCI ID "
                "database among mig-parted's 96 GB-class filter (0x2342, 0x233D, 0x20B6, 0x2329)",
            ),
        ),
        GpuModel(
            "gh200-144gb",
            "NVIDIA GH200 144GB HBM3e",
            144,
            (0x2348,),
            slurm_type="gh200",
            mig=_seven_slice(
                ("1g.18gb", "1g.36gb", "2g.36gb", "3g.72gb", "4g.72gb", "7g.144gb"),
                HOPPER_AND_LATER,
                "not published in the MIG guide",
                "profile IDs (taken from the 8-slice class); names are mig-parted's, not the MIG guide's",
            ),
        ),
        GpuModel(
            "h20",
            "NVIDIA H20 96GB",
            96,
            (0x2329,),
            slurm_type="h20",
            mig=_seven_slice(
                ("1g.12gb", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"),
                HOPPER_AND_LATER,
                "R535 (>= 535.161.07)",
                "profile IDs (taken from the 8-slice class); 0x2329 as the H20's ID is read from the PCI ID "
                "database among mig-parted's 96 GB-class filter",
            ),
        ),
        GpuModel(
            "b200",
            "NVIDIA B200 180GB",
            180,
            (0x2901,),
            slurm_type="b200",
            mig=_seven_slice(
                ("1g.23gb", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"),
                HOPPER_AND_LATER,
                "R570 (>= 570.133.20)",
                "profile IDs (taken from the 8-slice class)",
            ),
        ),
        GpuModel("l40s", "NVIDIA L40S 48GB", 48, (0x26B9,), slurm_type="l40s"),
        GpuModel("rtx-a6000", "NVIDIA RTX A6000 48GB", 48, (0x2230,), slurm_type="rtx_a6000"),
        GpuModel(
            "rtx-pro-6000",
            "NVIDIA RTX PRO 6000 Blackwell 96GB",
            96,
            (0x2BB5,),
            slurm_type="rtx_pro_6000",
            mig=_RTX_PRO_6000,
        ),
        GpuModel("rtx-4090", "NVIDIA GeForce RTX 4090 24GB", 24, (0x2684,), consumer=True, slurm_type="rtx_4090"),
        GpuModel("rtx-3090", "NVIDIA GeForce RTX 3090 24GB", 24, (0x2204,), consumer=True, slurm_type="rtx_3090"),
    )
}


def gpu_model(name: str) -> GpuModel | None:
    return CATALOG.get(name)


def mig_models() -> list[GpuModel]:
    return [m for m in CATALOG.values() if m.mig is not None]
