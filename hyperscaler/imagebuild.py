"""`make images` / `hyperscaler image build`: role images built with Packer, and the manifest a stack reads.

Each role image is the pinned base image (Packer checks its sha256) booted under QEMU, provisioned by the
same packages step that `pulumi up` runs on a node of that role (render/packages.py on
config/packages.py: role_image_packages), then cleaned of per-VM identity (images/scripts/finalize.sh).
The image lands in OUT/<role>-<first 12 of its sha256>.qcow2, and OUT/manifest.json lists it with its
sha256, format and size, in the shape of a stack's `images:` entries (docs/images.md).

Packer versions: 1.6.6 (Debian 12) has the qemu builder built in and refuses `required_plugins`; 1.7 and
later need the qemu plugin from `packer init`. The templates in images/templates work with both; the plugin
requirement lives in images/plugins.pkr.hcl, staged beside them (and `packer init` run) only for 1.7+.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.images import GIB, MANIFEST_VERSION, local_virtual_size
from config.packages import role_image_packages
from config.topology import Role
from hyperscaler.imagefetch import sha256_of
from render.packages import render_packages_script

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = PROJECT_ROOT / "images"
TEMPLATES_DIR = IMAGES_DIR / "templates"
SCRIPTS_DIR = IMAGES_DIR / "scripts"
PLUGINS_FILE = IMAGES_DIR / "plugins.pkr.hcl"
ROLES: dict[str, Role] = {"compute": Role.COMPUTE, "controller": Role.CONTROLLER, "storage": Role.STORAGE}
FIRST_PLUGIN_PACKER = (1, 7, 0)  # the first Packer whose qemu builder is a plugin
BUILD_TIMEOUT_S = 3600
# No update check (there is no network to it, and a build must not depend on one); no colour in logs.
PACKER_ENV = {"CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"}
SEED_USER_DATA = """\
#cloud-config
# The build's only login: root with this build's key (removed again by images/scripts/finalize.sh).
disable_root: false
users: []
ssh_pwauth: false
ssh_authorized_keys:
  - {public_key}
"""


class BuildError(Exception):
    pass


@dataclass(frozen=True)
class Base:
    """The pinned base image, and its kernel when it boots without a boot loader (the offline base)."""

    path: Path
    sha256: str
    format: str = "qcow2"
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None


@dataclass(frozen=True)
class Built:
    role: str
    path: Path
    sha256: str
    virtual_size_gib: int
    seconds: float
    log: Path


def packer_version(packer: str = "packer") -> tuple[int, ...]:
    try:
        proc = subprocess.run([packer, "version"], capture_output=True, text=True, timeout=60, env=_env(), check=False)
    except FileNotFoundError:
        raise BuildError(f"{packer} is not installed (Debian: apt-get install packer)") from None
    found = re.search(r"v?(\d+)\.(\d+)\.(\d+)", proc.stdout)
    if proc.returncode != 0 or found is None:
        raise BuildError(f"`{packer} version` failed: {proc.stdout}{proc.stderr}")
    return tuple(int(part) for part in found.groups())


def _env() -> dict[str, str]:
    return {**os.environ, **PACKER_ENV}


def template_files() -> list[Path]:
    return sorted(TEMPLATES_DIR.glob("*.pkr.hcl"))


def render_role_scripts(directory: Path) -> dict[str, Path]:
    """Each role's packages step, rendered exactly as a node of that role receives it."""
    directory.mkdir(parents=True, exist_ok=True)
    scripts = {}
    for name, role in ROLES.items():
        script = render_packages_script(role_image_packages(role))
        path = directory / f"{name}.sh"
        path.write_text(script.content)
        path.chmod(0o755)
        scripts[name] = path
    return scripts


def write_seed(directory: Path) -> Path:
    """A NoCloud seed that lets this build, and nothing else, log in; returns the private key's path."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "build_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hyperscaler-image-build", "-f", str(key)],
        check=True,
        timeout=60,
    )
    public = (directory / "build_key.pub").read_text().strip()
    (directory / "user-data").write_text(SEED_USER_DATA.format(public_key=public))
    (directory / "meta-data").write_text(f"instance-id: image-build-{uuid.uuid4()}\nlocal-hostname: image-build\n")
    return key


def stage_templates(directory: Path, version: tuple[int, ...], log: Path, packer: str = "packer") -> Path:
    """The templates in a directory of their own, with the plugin requirement when this Packer needs it
    (and `packer init` run on them, its output in `log`)."""
    staged = directory / "templates"
    staged.mkdir(parents=True, exist_ok=True)
    for template in template_files():
        shutil.copyfile(template, staged / template.name)
    if version >= FIRST_PLUGIN_PACKER:
        shutil.copyfile(PLUGINS_FILE, staged / PLUGINS_FILE.name)
        _packer([packer, "init", str(staged)], directory, log)
    return staged


def template_vars(
    base: Base, output_dir: Path, packages_dir: Path, seed_dir: Path, key: Path, accelerator: str
) -> dict[str, str]:
    values = {
        "base_image": str(base.path),
        "base_sha256": base.sha256,
        "base_format": base.format,
        "output_dir": str(output_dir),
        "packages_dir": str(packages_dir),
        "scripts_dir": str(SCRIPTS_DIR),
        "seed_dir": str(seed_dir),
        "ssh_private_key_file": str(key),
        "accelerator": accelerator,
    }
    if base.kernel:
        values.update(kernel=base.kernel, initrd=base.initrd or "", cmdline=base.cmdline or "")
    return values


def var_args(values: dict[str, str]) -> list[str]:
    return [arg for key, value in sorted(values.items()) for arg in ("-var", f"{key}={value}")]


def _packer(argv: Sequence[str], cwd: Path, log: Path, timeout: float = BUILD_TIMEOUT_S) -> None:
    """Run packer with its output in `log` (and on stderr when it is a terminal)."""
    env = {**_env(), "PACKER_CACHE_DIR": str(cwd / "packer_cache")}
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(
            argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False
        )
    if proc.returncode != 0:
        tail = log.read_text()[-4000:]
        raise BuildError(f"`{' '.join(argv[:3])} ...` failed (rc={proc.returncode}); see {log}:\n{tail}")


def build_role(
    role: str,
    base: Base,
    out_dir: Path,
    accelerator: str = "kvm",
    packer: str = "packer",
    log: Path | None = None,
) -> Built:
    """Build one role image into out_dir; the work directory goes away whatever happens."""
    if role not in ROLES:
        raise BuildError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or out_dir / f"{role}.log"
    log.write_text("")
    version = packer_version(packer)
    started = time.monotonic()
    with _workdir(out_dir, role) as work:
        staged = stage_templates(work, version, log, packer)
        scripts = render_role_scripts(work / "packages")
        key = write_seed(work / "seed")
        output = work / "output"
        values = template_vars(base, output, scripts[role].parent, work / "seed", key, accelerator)
        _packer([packer, "build", "-color=false", f"-only={role}.qemu.role", *var_args(values), str(staged)], work, log)
        produced = output / role / f"{role}.qcow2"
        if not produced.is_file():
            raise BuildError(f"packer finished but wrote no {produced}; see {log}")
        digest = sha256_of(produced)
        size = local_virtual_size(produced, "qcow2") or 0
        final = out_dir / f"{role}-{digest[:12]}.qcow2"
        produced.chmod(0o644)
        os.replace(produced, final)
    return Built(role, final, digest, -(-size // GIB), time.monotonic() - started, log)


@contextlib.contextmanager
def _workdir(out_dir: Path, role: str) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix=f".build-{role}-", dir=out_dir))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_manifest(out_dir: Path, built: Sequence[Built], base: Base, packer: str = "packer") -> Path:
    """OUT/manifest.json: the images of this build added to (or replacing) the ones already listed."""
    path = out_dir / "manifest.json"
    manifest: dict[str, Any] = {"version": MANIFEST_VERSION, "images": {}, "builds": {}}
    if path.exists():
        with contextlib.suppress(ValueError, OSError):
            old = json.loads(path.read_text())
            if old.get("version") == MANIFEST_VERSION:
                manifest["images"].update(old.get("images", {}))
                manifest["builds"].update(old.get("builds", {}))
    version = ".".join(str(v) for v in packer_version(packer))
    for item in built:
        manifest["images"][item.role] = {
            "source": str(item.path),
            "sha256": item.sha256,
            "format": "qcow2",
            "virtual_size_gib": item.virtual_size_gib,
        }
        manifest["builds"][item.role] = {
            "packages": list(role_image_packages(ROLES[item.role]).all),
            "base": {"source": str(base.path), "sha256": base.sha256},
            "direct_boot": {"kernel": base.kernel, "initrd": base.initrd, "cmdline": base.cmdline}
            if base.kernel
            else None,
            "packer": version,
            "build_seconds": round(item.seconds, 1),
            "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)
    return path


def build_images(roles: Sequence[str], base: Base, out_dir: Path, accelerator: str, packer: str = "packer") -> Path:
    """What `make images` runs: every role asked for, one after the other, then the manifest."""
    built = []
    for role in roles:
        print(f"building the {role} image (log: {out_dir / f'{role}.log'})", file=sys.stderr)
        item = build_role(role, base, out_dir, accelerator, packer)
        print(f"  {item.path} sha256 {item.sha256} ({item.seconds:.0f} s)", file=sys.stderr)
        built.append(item)
    return write_manifest(out_dir, built, base, packer)


__all__ = ["Base", "BuildError", "Built", "build_images", "build_role", "write_manifest"]
