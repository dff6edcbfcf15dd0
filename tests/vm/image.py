"""The VM tier's image: the compute role image, built by Packer from images/templates on a small base.

The base is made offline here with debootstrap + apt in a chroot, then ``mkfs.ext4 -d`` into a raw file and
``qemu-img convert`` to qcow2: no libguestfs (it hangs without KVM here, sandbox.md section 5). Its
filesystem has no partition table, so guests (and the Packer build) boot it directly from the host with
``root=/dev/vda``; the kernel and initrd are copied out next to it. Debian's initramfs-tools default
(MODULES=most) carries virtio_blk and ext4. The base carries what a node boots with and every package of
the other roles (the VM tier's controller boots the same image, with no network to install from), but not
the compute role's: Packer's build installs those with the packages step `pulumi up` runs on a compute node
(hyperscaler/imagebuild.py), under TCG, and the VM tier boots exactly the image Packer wrote.

Both are cached outside the repository, keyed by what goes into them (packages, recipe, templates, the
rendered packages step, the Packer version). Run ``python -m tests.vm.image`` to build (or find) the image
and print its directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from config.packages import every_package, role_image_packages
from config.topology import Role
from hyperscaler import imagebuild
from hyperscaler.imagefetch import sha256_of
from tests.integration.harness._util import CLEAN_ENV, HarnessError, require_root, require_tools, run
from tests.integration.harness.rootfs import (
    _copy_host_apt_sources,
    _locked,
    _remove_tree,
    default_cache_dir,
    host_mirror,
)

SUITE = "bookworm"
# The compute role image's packages (config/packages.py): Packer installs them, so the base lacks them.
COMPUTE_PACKAGES = role_image_packages(Role.COMPUTE).all
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
    "isc-dhcp-client",  # cloud-init's fallback network (DHCP) in the Packer build, which has no network-config
    "net-tools",  # its ENI renderer writes routes as `post-up route add default gw ...`
    "iproute2",
    "procps",
    "sudo",
    "tzdata",
    "e2fsprogs",
    # every other role's packages: the prebuilt-image case for the VM tier's controller
    *sorted(set(every_package()) - set(COMPUTE_PACKAGES)),
)
# Bump when the recipe changes in a way that must invalidate cached images (the base's, the Packer build's).
RECIPE_VERSION = "4"
IMAGE_RECIPE_VERSION = "1"
IMAGE_GIB = 4  # ext4 size; the node's root volume is a larger qcow2 overlay and cloud-init grows the fs
MARKER = "image.json"
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0"

# Installed, not started at boot: the program's scripts `systemctl enable --now` what a node needs, and
# under TCG every daemon started for nothing (MariaDB on compute nodes) costs boot time.
DISABLED_SERVICES = ("dnsmasq", "mariadb", "munge", "slurmctld", "slurmdbd")
# Image-side settings, the kind a golden image bakes in: only the NoCloud datasource (no probing of
# cloud metadata services, which costs minutes under TCG), and no RSA/DSA host keys (their generation is
# slow under TCG; the program's SSH client uses ed25519).
CLOUD_CFG = """\
datasource_list: [NoCloud, None]
ssh_genkeytypes: [ed25519, ecdsa]
"""
FSTAB = "/dev/vda\t/\text4\tdefaults,errors=remount-ro\t0\t1\n"


@dataclass(frozen=True)
class VmBase:
    """The debootstrap base: what Packer builds the compute image on."""

    directory: Path
    qcow2: Path
    kernel: Path
    initrd: Path
    sha256: str


@dataclass(frozen=True)
class VmImage:
    directory: Path
    qcow2: Path
    kernel: Path
    initrd: Path
    cmdline: str
    build_seconds: float  # of the build that produced it (0 when it was cached already)
    sha256: str = ""  # of qcow2, as Packer's build recorded it: what a stack pins
    packer_log: Path | None = None  # the build's output, provisioning included
    manifest: Path | None = None  # the build's manifest.json, as `make images` writes it


def base_key(packages: tuple[str, ...] = PACKAGES) -> str:
    parts = [RECIPE_VERSION, SUITE, str(IMAGE_GIB), CLOUD_CFG, FSTAB, *DISABLED_SERVICES, *sorted(packages)]
    text = "\n".join(parts)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def image_key(base: VmBase) -> str:
    """Everything the Packer build reads: the base, the templates, the rendered packages step, finalize.sh,
    the driver and the Packer version."""
    digest = hashlib.sha256()
    digest.update(f"{IMAGE_RECIPE_VERSION}\n{base.sha256}\n{imagebuild.packer_version()}\n".encode())
    scripts = sorted(imagebuild.SCRIPTS_DIR.glob("*.sh"))
    for path in [*imagebuild.template_files(), *scripts, Path(imagebuild.__file__)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in sorted(imagebuild.render_role_scripts(Path(tmp)).items()):
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


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


def _cached(base: Path, name: str, build: Callable[[Path], dict[str, Any]]) -> tuple[Path, float]:
    """base/name, built by `build(tmp)` under a lock when absent (a concurrent builder is waited for)."""
    final = base / name
    built = 0.0
    if not (final / MARKER).exists():
        base.mkdir(parents=True, exist_ok=True)
        with _locked(base / f"{name}.lock", timeout=3600):
            if not (final / MARKER).exists():
                t0 = time.monotonic()
                for debris in base.glob(f"{name}.tmp-*"):  # we hold the lock: an interrupted build
                    _remove_tree(debris)  # refuses while debootstrap's /proc is still mounted below
                if final.exists():
                    _remove_tree(final)
                tmp = Path(tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=base))
                tmp.chmod(0o755)
                try:
                    info = build(tmp)
                    built = time.monotonic() - t0
                    (tmp / MARKER).write_text(json.dumps({**info, "total_s": built}, indent=1) + "\n")
                    os.rename(tmp, final)
                except BaseException:
                    _remove_tree(tmp)
                    raise
    return final, built


def ensure_base(cache_dir: Path | None = None) -> VmBase:
    base = cache_dir if cache_dir is not None else default_cache_dir()

    def build(tmp: Path) -> dict[str, Any]:
        require_root()
        require_tools(["debootstrap", "unshare", "chroot", "mkfs.ext4", "qemu-img"])
        times = _build(tmp, base / f"vm-base-{base_key()}.log")
        digest = sha256_of(tmp / "base.qcow2")
        return {**times, "sha256": digest, "packages": list(PACKAGES), "cmdline": KERNEL_CMDLINE}

    final, _ = _cached(base, f"vm-base-{base_key()}", build)
    info = json.loads((final / MARKER).read_text())
    return VmBase(final, final / "base.qcow2", final / "vmlinuz", final / "initrd.img", info["sha256"])


def _direct_boot_base(vm_base: VmBase, directory: Path) -> imagebuild.Base:
    """The base as Packer boots it: direct kernel boot, with the kernel and initrd copied into `directory`
    (next to the images, which boot the same way)."""
    for boot_file in ("vmlinuz", "initrd.img"):
        shutil.copyfile(vm_base.directory / boot_file, directory / boot_file)
        (directory / boot_file).chmod(0o644)  # read by QEMU as libvirt-qemu
    kernel, initrd = directory / "vmlinuz", directory / "initrd.img"
    return imagebuild.Base(
        vm_base.qcow2, vm_base.sha256, kernel=str(kernel), initrd=str(initrd), cmdline=KERNEL_CMDLINE
    )


def ensure_image(cache_dir: Path | None = None) -> VmImage:
    """The compute role image Packer built on the base (both cached; either is built when absent)."""
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    vm_base = ensure_base(cache)
    name = f"vm-{image_key(vm_base)}"

    def build(tmp: Path) -> dict[str, Any]:
        require_root()
        require_tools(["packer", "qemu-system-x86_64", "qemu-img", "ssh-keygen", "mkisofs"])
        packer_base = _direct_boot_base(vm_base, tmp)
        built = imagebuild.build_role("compute", packer_base, tmp, accelerator="tcg", log=tmp / "packer.log")
        # The manifest `make images` writes, naming the image where it will be once the build is cached.
        imagebuild.write_manifest(tmp, [replace(built, path=cache / name / built.path.name)], packer_base)
        return {
            "qcow2": built.path.name,
            "sha256": built.sha256,
            "virtual_size_gib": built.virtual_size_gib,
            "packer_s": built.seconds,
            "base": str(vm_base.directory),
            "cmdline": KERNEL_CMDLINE,
        }

    final, seconds = _cached(cache, name, build)
    info = json.loads((final / MARKER).read_text())
    return VmImage(
        directory=final,
        qcow2=final / info["qcow2"],
        kernel=final / "vmlinuz",
        initrd=final / "initrd.img",
        cmdline=KERNEL_CMDLINE,
        build_seconds=seconds,
        sha256=info["sha256"],
        packer_log=final / "packer.log",
        manifest=final / "manifest.json",
    )


def build_offline_images(out: Path, accelerator: str, roles: list[str]) -> Path:
    """`make images` without a BASE: role images on the offline base, booted the way the VM tier boots it
    (direct kernel boot: the kernel and initrd are copied next to the images, and the manifest names them)."""
    out.mkdir(parents=True, exist_ok=True)
    return imagebuild.build_images(roles, _direct_boot_base(ensure_base(), out), out, accelerator)


if __name__ == "__main__":
    if sys.argv[1:2] == ["images"]:  # images OUT ACCELERATOR ROLE...
        print(build_offline_images(Path(sys.argv[2]), sys.argv[3], sys.argv[4:] or list(imagebuild.ROLES)))
        sys.exit(0)
    t0 = time.monotonic()
    image = ensure_image()
    print(f"{image.directory} ({time.monotonic() - t0:.1f}s)", file=sys.stderr)
    print(image.directory)
