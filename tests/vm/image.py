"""A bootable Debian bookworm VM image, built once and cached outside the repository.

debootstrap + apt in a chroot, then ``mkfs.ext4 -d`` into a raw file and ``qemu-img convert`` to qcow2:
no libguestfs (it hangs without KVM here, sandbox.md section 5). The filesystem has no partition table,
so the guest boots directly from the host with ``root=/dev/vda``; the kernel and initrd are copied out
next to the image. Debian's initramfs-tools default (MODULES=most) carries virtio_blk and ext4.

Run ``python -m tests.vm.image`` to build (or find) it and print its directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from config.packages import every_package
from tests.integration.harness._util import CLEAN_ENV, HarnessError, require_root, require_tools, run
from tests.integration.harness.rootfs import (
    _copy_host_apt_sources,
    _locked,
    _remove_tree,
    default_cache_dir,
    host_mirror,
)

SUITE = "bookworm"
# What a cloud image of the project's golden image needs, and nothing it can do without:
PACKAGES: tuple[str, ...] = (
    "linux-image-amd64",
    "systemd-sysv",
    "udev",  # /dev/disk/by-id/virtio-<serial>, and set-name renames via udev rules
    "dbus",  # hostnamectl/timedatectl, which cloud-init calls under systemd
    "systemd-timesyncd",  # an NTP client already present, so cloud-init's ntp module installs nothing
    "openssh-server",
    "cloud-init",
    "python3-cffi-backend",  # cloud-init's crypto imports need it with --no-install-recommends
    "ifupdown",  # cloud-init 22.4 renders network-config to ENI first (renderers.DEFAULT_PRIORITY)
    "net-tools",  # its ENI renderer writes routes as `post-up route add default gw ...`
    "iproute2",
    "procps",
    "sudo",
    "tzdata",
    "e2fsprogs",
    *every_package(),  # every role's packages (config/packages.py): the prebuilt-image case
)
# Bump when the recipe changes in a way that must invalidate cached images.
RECIPE_VERSION = "3"
IMAGE_GIB = 4  # ext4 size; the node's root volume is a larger qcow2 overlay and cloud-init grows the fs
MARKER = "image.json"
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0"

# Installed, not started at boot: the program's scripts `systemctl enable --now` what a node needs, and
# under TCG every daemon started for nothing (MariaDB on compute nodes) costs boot time.
DISABLED_SERVICES = ("dnsmasq", "mariadb", "munge", "slurmctld", "slurmd", "slurmdbd")
# Image-side settings, the kind a golden image bakes in: only the NoCloud datasource (no probing of
# cloud metadata services, which costs minutes under TCG), and no RSA/DSA host keys (their generation is
# slow under TCG; the program's SSH client uses ed25519).
CLOUD_CFG = """\
datasource_list: [NoCloud, None]
ssh_genkeytypes: [ed25519, ecdsa]
"""
FSTAB = "/dev/vda\t/\text4\tdefaults,errors=remount-ro\t0\t1\n"


@dataclass(frozen=True)
class VmImage:
    directory: Path
    qcow2: Path
    kernel: Path
    initrd: Path
    cmdline: str
    build_seconds: float  # of the build that produced it (0 when it was cached already)


def image_key(packages: tuple[str, ...] = PACKAGES) -> str:
    parts = [RECIPE_VERSION, SUITE, str(IMAGE_GIB), CLOUD_CFG, FSTAB, *DISABLED_SERVICES, *sorted(packages)]
    text = "\n".join(parts)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _chroot(root: Path, script: str, log: Path, timeout: float = 1800) -> None:
    # Private mount+pid namespace: /proc exists only there, and stray postinst processes die with it.
    env = dict(CLEAN_ENV, DEBIAN_FRONTEND="noninteractive")
    argv = [
        "unshare", "--mount", "--pid", "--fork", "--propagation", "private",
        f"--mount-proc={root}/proc", "chroot", str(root), "/bin/sh", "-c", script,
    ]  # fmt: skip
    proc = run(argv, check=False, timeout=timeout, env=env)
    with open(log, "a") as fh:
        fh.write(f"$ {script}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise HarnessError(f"chroot step failed (rc={proc.returncode}), see {log}:\n{proc.stderr[-3000:]}")


def _populate(root: Path, log: Path) -> dict[str, float]:
    times: dict[str, float] = {}
    t0 = time.monotonic()
    mirror = host_mirror(SUITE)
    proc = run(["debootstrap", "--variant=minbase", SUITE, str(root), mirror], check=False, timeout=1200)
    with open(log, "a") as fh:
        fh.write(f"debootstrap {SUITE} {mirror}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise HarnessError(f"debootstrap failed (rc={proc.returncode}), see {log}")
    times["debootstrap_s"] = time.monotonic() - t0

    policy = root / "usr/sbin/policy-rc.d"  # postinsts must not start daemons in the build chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    _copy_host_apt_sources(root)
    t0 = time.monotonic()
    _chroot(
        root,
        "set -e; apt-get update -qq; "
        f"apt-get install -y -qq --no-install-recommends {' '.join(PACKAGES)}; apt-get clean; "
        f"rm -rf /var/lib/apt/lists/*; systemctl disable {' '.join(DISABLED_SERVICES)}",
        log,
    )
    times["install_s"] = time.monotonic() - t0

    # Per-VM identity must come from first boot: host keys (cloud-init), machine-id (systemd), and no
    # munge key, so the test proves the program distributes one.
    policy.unlink()
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/munge/munge.key").unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/resolv.conf").write_text("")
    (root / "etc/fstab").write_text(FSTAB)
    (root / "etc/cloud/cloud.cfg.d/90-hyperscaler-test.cfg").write_text(CLOUD_CFG)
    return times


def _boot_file(root: Path, link: str) -> Path:
    # /vmlinuz and /initrd.img are symlinks Debian's kernel postinst keeps pointing at the newest kernel.
    target = os.readlink(root / link)
    path = root / target.lstrip("/") if target.startswith("/") else root / target
    if not path.is_file():
        raise HarnessError(f"{link} -> {target} is missing in the image")
    return path


def _build(tmp: Path, log: Path) -> dict[str, float]:
    root = tmp / "rootfs"
    root.mkdir(mode=0o755)
    times = _populate(root, log)
    shutil.copyfile(_boot_file(root, "vmlinuz"), tmp / "vmlinuz")
    shutil.copyfile(_boot_file(root, "initrd.img"), tmp / "initrd.img")

    t0 = time.monotonic()
    raw = tmp / "image.raw"
    with open(raw, "wb") as fh:
        fh.truncate(IMAGE_GIB * 1024**3)  # sparse
    run(["mkfs.ext4", "-q", "-L", "root", "-d", str(root), str(raw)], timeout=900)
    run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(tmp / "base.qcow2")], timeout=900)
    raw.unlink()
    _remove_tree(root)
    times["mkfs_convert_s"] = time.monotonic() - t0
    for name in ("base.qcow2", "vmlinuz", "initrd.img"):
        (tmp / name).chmod(0o644)  # read by QEMU as libvirt-qemu
    return times


def ensure_image(cache_dir: Path | None = None) -> VmImage:
    """The cached image, built under a lock when absent (a concurrent builder is waited for)."""
    base = cache_dir if cache_dir is not None else default_cache_dir()
    key = image_key()
    final = base / f"vm-{key}"
    built = 0.0
    if not (final / MARKER).exists():
        require_root()
        require_tools(["debootstrap", "unshare", "chroot", "mkfs.ext4", "qemu-img"])
        base.mkdir(parents=True, exist_ok=True)
        with _locked(base / f"vm-{key}.lock"):
            if not (final / MARKER).exists():
                t0 = time.monotonic()
                for debris in base.glob(f"vm-{key}.tmp-*"):  # we hold the lock: an interrupted build
                    _remove_tree(debris)  # refuses while debootstrap's /proc is still mounted below
                if final.exists():
                    _remove_tree(final)
                tmp = Path(tempfile.mkdtemp(prefix=f"vm-{key}.tmp-", dir=base))
                tmp.chmod(0o755)
                try:
                    times = _build(tmp, base / f"vm-{key}.log")
                    built = time.monotonic() - t0
                    info = {**times, "total_s": built, "packages": list(PACKAGES), "cmdline": KERNEL_CMDLINE}
                    (tmp / MARKER).write_text(json.dumps(info, indent=1) + "\n")
                    os.rename(tmp, final)
                except BaseException:
                    _remove_tree(tmp)
                    raise
    return VmImage(
        directory=final,
        qcow2=final / "base.qcow2",
        kernel=final / "vmlinuz",
        initrd=final / "initrd.img",
        cmdline=KERNEL_CMDLINE,
        build_seconds=built,
    )


if __name__ == "__main__":
    t0 = time.monotonic()
    image = ensure_image()
    print(f"{image.directory} ({time.monotonic() - t0:.1f}s)", file=sys.stderr)
    print(image.directory)
