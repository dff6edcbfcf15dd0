#!/usr/bin/env python3
"""Stand-ins for the NVIDIA driver's interface on harness nodes. NOT the driver: tests only.

Installed on a node (by Cluster(..., fake_nvidia=True)) as `nvidia-smi`, `nvidia-mig-parted` and
`nvidia-modprobe` in /usr/local/bin, each running this file. They keep the GPUs' MIG state in
/var/lib/fake-nvidia/state.json and answer exactly the calls hyperscaler's scripts make, in the formats
the real tools print; anything else fails loudly, so a script cannot come to depend on an unfaked call.

What each stands for:
  nvidia-smi --query-gpu=...  --format=csv,noheader   the driver's per-GPU fields (index, pci.bus_id,
                                                      pci.device_id, mig.mode.current, mig.mode.pending, name)
  nvidia-smi mig -lci         the compute-instance table of the MIG user guide's examples
  nvidia-smi -L               the device list
  nvidia-mig-parted apply|assert|export -f FILE -c NAME [--mode-only] [--skip-reset]
                              mig-parted on its v1 config: mode changes (on an Ampere GPU the mode stays
                              pending until a reset, and `reset_available: false` makes the reset fail, as
                              under passthrough), then instances, placed by a simple rule (largest first, at
                              the highest free allowed start), GI IDs by placement
  nvidia-modprobe -f PROC_CAP_PATH
                              creates /dev/nvidia-caps/nvidia-capN for a MIG capability, N from mig-minors
The harness writes /proc/driver/nvidia/gpus/<bus>/information and /proc/driver/nvidia-caps/mig-minors on a
tmpfs over the node's /proc/driver (render_proc_files below), and /dev/nvidia0..N-1.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

STATE = Path("/var/lib/fake-nvidia/state.json")
CAPS_DIR = Path("/dev/nvidia-caps")
MIG_MINORS = Path("/proc/driver/nvidia-caps/mig-minors")
GIS_PER_GPU = 15  # gi0-gi14
CIS_PER_GI = 8  # ci0-ci7

# name suffix -> (memory slices, allowed starts) for 8-slice GPUs; the fake needs no more than that.
EIGHT_SLICE = {"1g": (1, range(7)), "1g2": (2, (0, 2, 4, 6)), "2g": (2, (0, 2, 4)), "3g": (4, (0, 4)),
               "4g": (4, (0,)), "7g": (8, (0,))}  # fmt: skip
GPU_MODELS = {  # device id -> (name, 1g memory in GB, Ampere)
    "0x233010DE": ("NVIDIA H100 80GB HBM3", 10, False),
    "0x20B210DE": ("NVIDIA A100-SXM4-80GB", 10, True),
}


def render_proc_files(gpus: list[tuple[str, int]]) -> dict[str, str]:
    """{path under /proc/driver: content} for GPUs given as (pci bus "0000:41:00.0", minor)."""
    files = {}
    for bus, minor in gpus:
        files[f"nvidia/gpus/{bus}/information"] = (
            "Model: \t\t NVIDIA fake\nIRQ:   \t\t 0\nBus Type: \t PCIe\n"
            f"Bus Location: \t {bus}\nDevice Minor: \t {minor}\nGPU Excluded:\t No\n"
        )
    lines = ["config 1", "monitor 2"]
    minor_no = 3
    for _, gpu in gpus:
        for gi in range(GIS_PER_GPU):
            lines.append(f"gpu{gpu}/gi{gi}/access {minor_no}")
            minor_no += 1
            for ci in range(CIS_PER_GI):
                lines.append(f"gpu{gpu}/gi{gi}/ci{ci}/access {minor_no}")
                minor_no += 1
    files["nvidia-caps/mig-minors"] = "\n".join(lines) + "\n"
    return files


def initial_state(gpus: list[tuple[str, int]], device_id: str, caps_major: int) -> dict[str, object]:
    return {
        "caps_major": caps_major,
        "fail_apply": False,
        "reset_available": True,
        "gpus": [
            {"index": i, "bus": f"0000{bus}", "minor": minor, "device_id": device_id, "current": "Disabled",
             "pending": "Disabled", "instances": []}
            for i, (bus, minor) in enumerate(gpus)
        ],
    }  # fmt: skip


State = dict[str, Any]


def load() -> State:
    return json.loads(STATE.read_text())


def save(state: State) -> None:
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, STATE)


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"fake NVIDIA tool: {message}", file=sys.stderr)
    sys.exit(code)


# --- nvidia-smi ------------------------------------------------------------------------------------------


def smi(args: list[str]) -> None:
    state = load()
    if args and args[0].startswith("--query-gpu=") and args[1:] == ["--format=csv,noheader"]:
        fields = args[0].split("=", 1)[1].split(",")
        for gpu in state["gpus"]:
            values = {
                "index": str(gpu["index"]),
                "pci.bus_id": gpu["bus"].upper(),
                "pci.device_id": gpu["device_id"],
                "mig.mode.current": gpu["current"],
                "mig.mode.pending": gpu["pending"],
                "name": GPU_MODELS[gpu["device_id"]][0],
            }
            if any(f not in values for f in fields):
                fail(f"unsupported query fields {fields}")
            print(", ".join(values[f] for f in fields))
        return
    if args == ["mig", "-lci"]:
        rows = [
            (gpu["index"], inst["gi"], inst["profile"], inst["ci_profile_id"], inst["ci"], inst["size"])
            for gpu in state["gpus"]
            for inst in gpu["instances"]
        ]
        if not rows:
            print("No compute instances found: Not Found")
            sys.exit(6)
        bar = "+" + "-" * 68 + "+"
        print(bar)
        print("| Compute instances:" + " " * 49 + "|")
        print("| GPU     GPU       Name             Profile   Instance   Placement  |")
        print("|       Instance                       ID        ID       Start:Size |")
        print("|         ID                                                         |")
        print("|" + "=" * 68 + "|")
        for gpu_index, gi, name, pid, ci, size in rows:
            line = f"|  {gpu_index:2d}     {gi:2d}       MIG {name:<13}{pid:3d}       {ci:3d}          0:{size}     "
            print(line.ljust(69) + "|")
            print(bar)
        return
    if args == ["-L"]:
        for gpu in state["gpus"]:
            print(f"GPU {gpu['index']}: {GPU_MODELS[gpu['device_id']][0]} (UUID: GPU-fake-{gpu['index']})")
            for n, inst in enumerate(gpu["instances"]):
                print(f"  MIG {inst['profile']:<12} Device {n:2d}: (UUID: MIG-fake-{gpu['index']}-{inst['gi']})")
        return
    fail(f"nvidia-smi {' '.join(args)} is not faked")


# --- nvidia-mig-parted -----------------------------------------------------------------------------------


def read_config(path: str, name: str) -> list[State]:
    """The subset of mig-parted's v1 YAML that hyperscaler writes, read without a YAML library."""
    text = Path(path).read_text()
    if not re.search(r"^version: v1$", text, re.M):
        fail(f"{path}: version is not v1", 1)
    block = re.search(rf"^  {re.escape(name)}:\n((?:    .*\n|\s*\n)*)", text, re.M)
    if block is None:
        fail(f"{path}: no config {name!r}", 1)
    entries: list[State] = []
    for line in block.group(1).splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        if m := re.match(r"^    - device-filter: \[(.*)\]$", line):
            entries.append({"filter": re.findall(r'"(0x[0-9A-F]{8})"', m.group(1)), "devices": {}})
        elif line == "      devices: all":
            continue
        elif m := re.match(r"^      mig-enabled: (true|false)$", line):
            entries[-1]["enabled"] = m.group(1) == "true"
        elif line in ("      mig-devices:", "      mig-devices: {}"):
            continue
        elif m := re.match(r'^        "([^"]+)": (\d+)$', line):
            entries[-1]["devices"][m.group(1)] = int(m.group(2))
        else:
            fail(f"{path}: unexpected line {line!r}", 1)
    return entries


def _geometry(profile: str) -> tuple[int, tuple[int, ...], int]:
    """(memory slices, starts, GI ID base) of an 8-slice profile such as 3g.40gb or 1g.20gb."""
    m = re.match(r"^(\d)g\.(\d+)gb", profile)
    if m is None:
        fail(f"unknown profile {profile}", 1)
    g, mem = m.groups()
    key = "1g2" if g == "1" and int(mem) >= 20 else f"{g}g"
    size, starts = EIGHT_SLICE[key]
    return size, tuple(starts), {1: 7, 2: 3, 4: 1, 8: 0}[size]


def create(gpu: State, devices: dict[str, int]) -> None:
    gpu["instances"] = []
    used: set[int] = set()
    wanted = sorted(((p, c) for p, c in devices.items()), key=lambda pc: -_geometry(pc[0])[0])
    for profile, count in wanted:
        size, starts, base = _geometry(profile)
        for _ in range(count):
            free = [s for s in starts if not used & set(range(s, s + size))]
            if not free:
                fail(f"Insufficient Resources creating {profile}", 1)
            start = max(free)
            used |= set(range(start, start + size))
            gpu["instances"].append(
                {"gi": base + start // size, "ci": 0, "profile": profile, "ci_profile_id": 0, "size": size}
            )


def matching(state: State, entry: State) -> list[State]:
    return [g for g in state["gpus"] if g["device_id"] in entry["filter"]]


def mig_parted(args: list[str]) -> None:
    state = load()
    action = args[0] if args else ""
    if "-f" not in args or "-c" not in args:
        fail("-f FILE and -c NAME are required")
    entries = read_config(args[args.index("-f") + 1], args[args.index("-c") + 1])
    mode_only = "--mode-only" in args
    if action == "apply":
        if state.get("fail_apply"):
            fail("apply failed (the test asked for it)", 1)
        for entry in entries:
            want = "Enabled" if entry["enabled"] else "Disabled"
            for gpu in matching(state, entry):
                ampere = GPU_MODELS[gpu["device_id"]][2]
                if gpu["current"] != want:
                    gpu["pending"] = want
                    if ampere and "--skip-reset" not in args and not state["reset_available"]:
                        save(state)
                        fail("Resetting GPU is not supported", 1)
                    if not ampere or "--skip-reset" not in args:
                        gpu["current"] = want
                        gpu["instances"] = []
                if not mode_only:
                    if gpu["current"] != want:
                        fail("MIG mode is pending: reset the GPU first", 1)
                    create(gpu, entry["devices"] if entry["enabled"] else {})
        save(state)
        return
    if action == "assert":
        for entry in entries:
            want = "Enabled" if entry["enabled"] else "Disabled"
            for gpu in matching(state, entry):
                if gpu["current"] != want:
                    sys.exit(1)
                have: dict[str, int] = {}
                for inst in gpu["instances"]:
                    have[inst["profile"]] = have.get(inst["profile"], 0) + 1
                if not mode_only and have != (entry["devices"] if entry["enabled"] else {}):
                    sys.exit(1)
        return
    if action == "export":
        print(json.dumps(state["gpus"], indent=1))
        return
    fail(f"nvidia-mig-parted {' '.join(args)} is not faked")


# --- nvidia-modprobe -------------------------------------------------------------------------------------


def modprobe(args: list[str]) -> None:
    if len(args) != 2 or args[0] != "-f":
        fail(f"nvidia-modprobe {' '.join(args)} is not faked")
    m = re.match(r"^/proc/driver/nvidia/capabilities/(gpu\d+)/mig/(gi\d+(?:/ci\d+)?/access)$", args[1])
    if m is None:
        fail(f"not a MIG capability: {args[1]}", 1)
    cap = f"{m.group(1)}/{m.group(2)}"
    minors = dict(line.split() for line in MIG_MINORS.read_text().splitlines())
    if cap not in minors:
        fail(f"{cap} is not in {MIG_MINORS}", 1)
    CAPS_DIR.mkdir(exist_ok=True)
    node = CAPS_DIR / f"nvidia-cap{minors[cap]}"
    if not node.exists():
        os.mknod(node, 0o444 | 0o020000, os.makedev(int(load()["caps_major"]), int(minors[cap])))
        node.chmod(0o444)  # as the driver's (mknod applies the umask)


def main() -> None:
    tool = Path(sys.argv[0]).name
    if tool == "fake_nvidia.py" and len(sys.argv) > 1:
        tool, args = sys.argv[1], sys.argv[2:]
    else:
        args = sys.argv[1:]
    {"nvidia-smi": smi, "nvidia-mig-parted": mig_parted, "nvidia-modprobe": modprobe}.get(
        tool, lambda _: fail(f"unknown tool {tool}")
    )(args)


if __name__ == "__main__":
    main()
