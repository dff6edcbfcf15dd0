"""A cached Debian bookworm root filesystem that the test nodes overlay.

Built once with debootstrap, outside the repository, keyed by a hash of the package list.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from config.packages import every_package
from hyperscaler.filelock import exclusive

from ._util import CLEAN_ENV, HarnessError, mounts_under, require_root, require_tools, run

SUITE = "bookworm"
# What a harness node needs to be reachable, plus every role's packages (config/packages.py, the list the
# nodes' install step reads), as a prebuilt image would carry them.
PACKAGES: tuple[str, ...] = ("openssh-server", "python3", "iproute2", "procps", "sudo", *every_package())
# Bump when the build recipe changes in a way that should invalidate existing caches.
RECIPE_VERSION = "1"
DEFAULT_CACHE = Path("/var/cache/hyperscaler-test")
MARKER = ".hyperscaler-rootfs"
DEB822_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
LEGACY_SOURCES = Path("/etc/apt/sources.list")


def default_cache_dir() -> Path:
    return Path(os.environ.get("HYPERSCALER_TEST_CACHE", str(DEFAULT_CACHE)))


def rootfs_key(packages: Sequence[str], suite: str = SUITE) -> str:
    text = "\n".join([RECIPE_VERSION, suite, *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def host_mirror(suite: str = SUITE) -> str:
    """The Debian mirror the host's own apt sources name for `suite` (never hard-coded)."""
    if DEB822_SOURCES.exists():
        for stanza in re.split(r"\n\s*\n", DEB822_SOURCES.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            if suite in fields.get("suites", "").split() and fields.get("uris"):
                return fields["uris"].split()[0]
    if LEGACY_SOURCES.exists():
        for line in LEGACY_SOURCES.read_text().splitlines():
            # deb [options] URI suite components...
            m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == suite:
                return m.group(1)
    raise HarnessError(f"no apt source for suite {suite!r} in {DEB822_SOURCES} or {LEGACY_SOURCES}")


@contextmanager
def _locked(lock_path: Path, timeout: float = 1800) -> Iterator[None]:
    """An exclusive flock; a concurrent builder holds it for the whole build."""
    try:
        with exclusive(lock_path, timeout):
            yield
    except TimeoutError:
        raise HarnessError(f"timed out waiting for rootfs build lock {lock_path}") from None


def _remove_tree(path: Path) -> None:
    if mounts_under(path):
        raise HarnessError(f"refusing to delete {path}: something is still mounted below it")
    shutil.rmtree(path, ignore_errors=True)


def _copy_host_apt_sources(root: Path) -> None:
    # Same sources as the host (incl. updates/security) so node package versions match the host's.
    if DEB822_SOURCES.exists():
        dest = root / DEB822_SOURCES.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEB822_SOURCES, dest)
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
    elif LEGACY_SOURCES.exists():
        shutil.copyfile(LEGACY_SOURCES, root / LEGACY_SOURCES.relative_to("/"))


def _build(root: Path, packages: Sequence[str], suite: str, log: Path) -> None:
    mirror = host_mirror(suite)
    with open(log, "w") as fh:
        fh.write(f"debootstrap {suite} from {mirror}\n")
    started = time.monotonic()
    proc = run(["debootstrap", "--variant=minbase", suite, str(root), mirror], check=False, timeout=1200)
    with open(log, "a") as fh:
        fh.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise HarnessError(f"debootstrap failed (rc={proc.returncode}), see {log}:\n{proc.stderr[-3000:]}")
    debootstrap_s = time.monotonic() - started

    # Packages' postinst must not start daemons inside the build chroot.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    _copy_host_apt_sources(root)

    script = (
        "set -e; apt-get update -qq; "
        f"apt-get install -y -qq --no-install-recommends {' '.join(packages)}; apt-get clean"
    )
    env = dict(CLEAN_ENV, DEBIAN_FRONTEND="noninteractive")
    started = time.monotonic()
    # A private mount+pid namespace: /proc is mounted only there and stray postinst processes die with it.
    proc = run(
        [
            "unshare", "--mount", "--pid", "--fork", "--propagation", "private",
            f"--mount-proc={root}/proc", "chroot", str(root), "/bin/sh", "-c", script,
        ],
        check=False,
        timeout=1800,
        env=env,
    )  # fmt: skip
    with open(log, "a") as fh:
        fh.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise HarnessError(f"apt install failed (rc={proc.returncode}), see {log}:\n{proc.stderr[-3000:]}")
    install_s = time.monotonic() - started

    # Per-node secrets must not be shared through the lower layer: nodes get fresh host keys, and the
    # munge key is absent so tests prove the provisioning code distributes one.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/munge/munge.key").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("")
    (root / "etc/machine-id").write_text("")
    (root / MARKER).write_text(
        f"suite={suite}\nmirror={mirror}\npackages={' '.join(packages)}\n"
        f"debootstrap_s={debootstrap_s:.1f}\ninstall_s={install_s:.1f}\n"
    )


def ensure_rootfs(
    cache_dir: Path | None = None,
    packages: Sequence[str] = PACKAGES,
    suite: str = SUITE,
) -> Path:
    """Return the path of a ready rootfs directory, building it once if needed.

    The build happens in a temporary sibling directory that is renamed into place, under a lock, so
    concurrent callers never see a half-built tree. Never modify the returned tree: live overlays use it.
    """
    base = cache_dir if cache_dir is not None else default_cache_dir()
    key = rootfs_key(packages, suite)
    final = base / f"rootfs-{key}"
    if (final / MARKER).exists():
        return final
    require_root()
    require_tools(["debootstrap", "unshare", "chroot"])
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / f"rootfs-{key}.lock"):
        if (final / MARKER).exists():
            return final
        # We hold the lock, so any temp tree or unmarked final tree is debris of an interrupted build.
        for debris in base.glob(f"rootfs-{key}.tmp-*"):
            _remove_tree(debris)
        if final.exists():
            _remove_tree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f"rootfs-{key}.tmp-", dir=base))
        # mkdtemp makes 0700; the chroot's root must be traversable by _apt, munge, slurm...
        tmp.chmod(0o755)
        try:
            _build(tmp, packages, suite, base / f"rootfs-{key}.log")
            os.rename(tmp, final)
        except BaseException:
            _remove_tree(tmp)
            raise
    return final
