"""What a MIG node receives: its mig-parted config, the systemd units that order MIG before slurmd, the
script that derives its GRES from the devices that exist, and its mig step. Pure.

The node's layout alone goes into these files: adding or changing another node changes none of them.
"""

from __future__ import annotations

from config.mig import NodeMig
from config.models import ClusterSpec
from render.common import RenderedFile, content_hash
from render.remote import LIBEXEC, SLURM_INCLUDES, render_script
from render.repository import APT_REPO_LIB, repository_params
from render.slurm import GRES_NODE_FILE

MIG_CONFIG = "/etc/nvidia-mig-manager/hyperscaler.yaml"
MIG_SELECTED = "hyperscaler"  # the config's name inside MIG_CONFIG
STATUS_FILE = "/run/hyperscaler/mig-status"  # the verdict of the last slurmd start, gone with the boot
GRES_SCRIPT = f"{LIBEXEC}/mig-gres.sh"
MIG_SCRIPT = f"{LIBEXEC}/mig.sh"
# systemd reads drop-ins in name order and a later Environment= wins: "zz-" comes after the package's own
# override.conf (which selects all-disabled).
MIG_MANAGER_DROPIN = "/etc/systemd/system/nvidia-mig-manager.service.d/zz-hyperscaler.conf"
SLURMD_DROPIN = "/etc/systemd/system/slurmd.service.d/hyperscaler-mig.conf"
REPORT_UNIT = "/etc/systemd/system/hyperscaler-mig-report.service"
HEADER = "# Managed by hyperscaler. Edit the stack file, not this file: `pulumi up` overwrites it.\n"


def render_mig_parted_config(mig: NodeMig) -> str:
    """mig-parted's v1 format: one entry per GPU model of the node, matched by its PCI device IDs."""
    lines = [HEADER.rstrip("\n"), "version: v1", "mig-configs:", f"  {MIG_SELECTED}:"]
    for model in mig.models:
        ids = ", ".join(f'"{device}"' for device in model.mig_device_filter)
        lines += [
            f"    # {model.description}",
            f"    - device-filter: [{ids}]",
            "      devices: all",
            f"      mig-enabled: {'true' if mig.enabled else 'false'}",
        ]
        if mig.layout is not None:
            per_gpu = mig.totals_per_gpu()
            lines.append("      mig-devices:" + ("" if per_gpu else " {}"))  # mig-parted wants it when enabled
            lines += [f'        "{name}": {count}' for name, count in per_gpu]
    return "\n".join(lines) + "\n"


def declared(mig: NodeMig) -> str:
    """The node's MIG devices as mig-gres.sh counts them: "profile:count" words, sorted bytewise."""
    return " ".join(sorted(f"{name}:{count}" for name, count in mig.totals()))


def mig_manager_dropin() -> str:
    """nvidia-mig-manager.service, kept for its ordering and enablement, runs our boot action: NVIDIA's
    service.sh reboots whenever a GPU has no reset method after a mode change, and Hopper forgets the mode
    at every boot, so under passthrough it would reboot at every boot (docs/mig.md)."""
    return (
        HEADER
        + "[Unit]\nBefore=slurmd.service\n\n[Service]\n"
        + f"Environment=MIG_PARTED_CONFIG_FILE={MIG_CONFIG}\nEnvironment=MIG_PARTED_SELECTED_CONFIG={MIG_SELECTED}\n"
        # Once per boot: a later slurmd restart (which Wants= this unit) must not re-apply under running jobs.
        + "RemainAfterExit=yes\n"
        + f"ExecStart=\nExecStart={MIG_SCRIPT} boot\n"
    )


def slurmd_dropin() -> str:
    """slurmd waits for the MIG instances and starts only after its GRES was derived from them."""
    return (
        HEADER
        + "[Unit]\nWants=nvidia-mig-manager.service\nAfter=nvidia-mig-manager.service\n\n[Service]\n"
        + f"ExecStartPre={GRES_SCRIPT} write\n"
    )


def report_unit() -> str:
    return (
        HEADER
        + "[Unit]\nDescription=hyperscaler: drain or resume this node by its MIG devices\n"
        + "After=slurmd.service\nRequires=slurmd.service\n\n"
        + f"[Service]\nType=oneshot\nExecStart={GRES_SCRIPT} report\n\n[Install]\nWantedBy=multi-user.target\n"
    )


def gres_script(node: str, mig: NodeMig) -> RenderedFile:
    params = {
        "NODE_NAME": node,
        "DECLARED": declared(mig),
        "MIG_ENABLED": int(mig.enabled),
        "GRES_FILE": GRES_NODE_FILE,
        "STATUS_FILE": STATUS_FILE,
    }
    return render_script("mig-gres", params, includes=SLURM_INCLUDES)


def mig_files(node: str, mig: NodeMig) -> tuple[RenderedFile, ...]:
    return (
        RenderedFile(MIG_CONFIG, render_mig_parted_config(mig)),
        RenderedFile(MIG_MANAGER_DROPIN, mig_manager_dropin()),
        RenderedFile(SLURMD_DROPIN, slurmd_dropin()),
        RenderedFile(REPORT_UNIT, report_unit()),
        gres_script(node, mig),
    )


def mig_step_script(spec: ClusterSpec, node: str, mig: NodeMig) -> RenderedFile:
    repo = spec.mig.software.repository
    params: dict[str, object] = {
        "NODE_NAME": node,
        "CONFIG_FILE": MIG_CONFIG,
        "SELECTED": MIG_SELECTED,
        "LAYOUT_KEY": content_hash(render_mig_parted_config(mig), declared(mig)),
        "GRES_FILE": GRES_NODE_FILE,
        "GRES_SCRIPT": GRES_SCRIPT,
        "DRAIN_TIMEOUT": spec.slurm.drain_timeout_s,
        "PACKAGES": " ".join(spec.mig.software.packages),
        **repository_params(repo),
    }
    return render_script("mig", params, includes=("lib.sh", "slurm-lib.sh", APT_REPO_LIB))


def describe(mig: NodeMig) -> str:
    """One line for plans and diffs: what the node's GPUs become."""
    model = ", ".join(m.description for m in mig.models)
    if mig.layout is None:
        return f"MIG off on {mig.gpus} x {model}"
    return f"{mig.gpus} x {model} as " + " + ".join(f"{c} x {n}" for n, c in mig.totals_per_gpu())
