"""Role images with Packer: every template validates and is formatted (and seeded mistakes fail), and a real
`packer build` of the compute image (qemu builder, TCG, on the offline debootstrap base) runs the packages
step a compute node runs, after which that step finds nothing to install.

The build itself is tests/vm/image.py's (cached by what goes into it, docs/testing.md), so the VM tier boots
exactly the image checked here. Packer here is Debian 12's 1.6.6 (packages.apt), whose qemu builder is
built in; see docs/images.md for the templates' split with current Packer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_stack_file
from config.images import local_virtual_size
from config.packages import packages_for, role_image_packages
from config.topology import Role, plan_nodes
from hyperscaler import imagebuild
from hyperscaler.imagefetch import sha256_of
from render.packages import render_packages_script
from tests.integration.harness._util import CLEAN_ENV, require_root, require_tools, run
from tests.stacks import loaded
from tests.vm.image import COMPUTE_PACKAGES, VmImage, ensure_base, ensure_image

pytestmark = pytest.mark.integration

PACKER_ENV = {**CLEAN_ENV, **imagebuild.PACKER_ENV}


def packer(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["packer", *args], cwd=cwd, env=PACKER_ENV, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What the templates read, made the way imagebuild.build_role makes them (the base is a stand-in file:
    validate only checks its checksum's form)."""
    require_tools(["packer", "ssh-keygen"])
    work = tmp_path_factory.mktemp("packer-inputs")
    base = work / "base.qcow2"
    base.write_bytes(b"not booted by validate")
    scripts = imagebuild.render_role_scripts(work / "packages")
    key = imagebuild.write_seed(work / "seed")
    the_base = imagebuild.Base(base, sha256_of(base), kernel="/boot/vmlinuz", initrd="/boot/initrd.img", cmdline="x")
    values = imagebuild.template_vars(the_base, work / "out", scripts["compute"].parent, work / "seed", key, "tcg")
    return values


def staged_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "templates"
    shutil.copytree(imagebuild.TEMPLATES_DIR, copy)
    return copy


def test_every_template_validates(inputs: dict[str, str]) -> None:
    assert {p.stem.removesuffix(".pkr") for p in imagebuild.template_files()} == {*imagebuild.ROLES, "role"}
    whole = packer("validate", *imagebuild.var_args(inputs), ".", cwd=imagebuild.TEMPLATES_DIR)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    for role in imagebuild.ROLES:
        one = packer(
            "validate", f"-only={role}.qemu.role", *imagebuild.var_args(inputs), ".", cwd=imagebuild.TEMPLATES_DIR
        )
        assert one.returncode == 0, one.stdout + one.stderr


def test_every_template_is_formatted() -> None:
    for target in (imagebuild.TEMPLATES_DIR, imagebuild.PLUGINS_FILE):
        proc = packer("fmt", "-check", "-diff", str(target), cwd=imagebuild.IMAGES_DIR)
        assert proc.returncode == 0, f"{target}: run `packer fmt` on it\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize(
    ("file", "old", "new", "says"),
    [
        ("role.pkr.hcl", "cd_label ", "cd_lable ", 'An argument named "cd_lable" is not expected here'),
        ("role.pkr.hcl", "var.base_sha256", "var.base_sha265", 'does not have an attribute named "base_sha265"'),
        ("compute.pkr.hcl", "/compute.sh", "/compute-missing.sh", 'provisioner-block "shell"'),
        ("storage.pkr.hcl", '"source.qemu.role"', '"source.qemu.rolle"', "rolle"),
    ],
)
def test_a_seeded_mistake_fails_validate(
    tmp_path: Path, inputs: dict[str, str], file: str, old: str, new: str, says: str
) -> None:
    copy = staged_copy(tmp_path)
    text = (copy / file).read_text()
    assert old in text
    (copy / file).write_text(text.replace(old, new, 1))
    proc = packer("validate", *imagebuild.var_args(inputs), ".", cwd=copy)
    assert proc.returncode != 0 and says in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_a_seeded_misformat_fails_fmt(tmp_path: Path) -> None:
    copy = staged_copy(tmp_path)
    text = (copy / "compute.pkr.hcl").read_text()
    (copy / "compute.pkr.hcl").write_text(text.replace('  name = "compute"', '  name    =     "compute"'))
    proc = packer("fmt", "-check", str(copy), cwd=copy)
    assert proc.returncode != 0 and "compute.pkr.hcl" in proc.stdout


def test_the_plugin_requirement_stays_out_of_packer_1_6(tmp_path: Path, inputs: dict[str, str]) -> None:
    """Debian 12's Packer refuses `required_plugins`: with the plugin file beside the templates validate
    fails, and stage_templates leaves it out for that version (current Packer gets it, plus `packer init`)."""
    version = imagebuild.packer_version()
    assert version < imagebuild.FIRST_PLUGIN_PACKER, f"packer {version}: this test documents Debian 12's 1.6.x"
    copy = staged_copy(tmp_path)
    shutil.copyfile(imagebuild.PLUGINS_FILE, copy / imagebuild.PLUGINS_FILE.name)
    refused = packer("validate", *imagebuild.var_args(inputs), ".", cwd=copy)
    assert refused.returncode != 0 and 'Blocks of type "required_plugins" are not expected here' in refused.stdout
    staged = imagebuild.stage_templates(tmp_path / "stage", version, tmp_path / "stage.log")
    assert sorted(p.name for p in staged.iterdir()) == sorted(p.name for p in imagebuild.template_files())
    assert packer("validate", *imagebuild.var_args(inputs), ".", cwd=staged).returncode == 0


def test_the_build_runs_the_nodes_own_packages_step(tmp_path: Path) -> None:
    """One list per role, one step: what Packer runs is byte for byte the step `pulumi up` would send."""
    for name, path in imagebuild.render_role_scripts(tmp_path).items():
        step = render_packages_script(role_image_packages(imagebuild.ROLES[name]))
        assert path.read_text() == step.content and os.access(path, os.X_OK)


def test_image_scripts_pass_shellcheck(tmp_path: Path) -> None:
    require_tools(["shellcheck"])
    scripts = [*imagebuild.SCRIPTS_DIR.glob("*.sh"), *imagebuild.render_role_scripts(tmp_path).values()]
    proc = run(["shellcheck", "-S", "style", *map(str, scripts)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the real build --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image() -> VmImage:
    return ensure_image()


def test_packer_built_the_compute_image_with_the_packages_step(image: VmImage) -> None:
    log = image.packer_log.read_text() if image.packer_log else ""
    # Without a prebuilt image: the step installs what the base lacks (the base has the other roles' only).
    installing = [line for line in log.splitlines() if "[packages] installing Debian:" in line]
    assert len(installing) == 1 and "slurmd" in installing[0].split(), log[-3000:]
    assert set(installing[0].split(":", 2)[-1].split()) <= set(COMPUTE_PACKAGES)
    assert "[packages] packages ready" in log and "Provisioning with shell script" in log
    assert "/packages/compute.sh" in log and "/images/scripts/finalize.sh" in log
    assert "Builds finished. The artifacts of successful builds are" in log
    # The image is what the manifest says, and the base was read, not changed.
    assert sha256_of(image.qcow2) == image.sha256
    base = ensure_base()
    assert sha256_of(base.qcow2) == base.sha256


def test_the_manifest_pins_the_image_for_a_stack(image: VmImage, tmp_path: Path) -> None:
    assert image.manifest is not None
    stack = tmp_path / "Pulumi.img.yaml"
    dev = (Path(loaded("dev").source)).read_text()
    stack.write_text(dev + f"    images:\n      debian-12: {{manifest: {image.manifest}, entry: compute}}\n")
    spec = load_stack_file(stack).spec
    pinned = spec.images["debian-12"]
    assert (pinned.source, pinned.sha256) == (str(image.qcow2), image.sha256)
    assert pinned.virtual_size_gib == -(-(local_virtual_size(image.qcow2, "qcow2") or 0) // 2**30)


@contextlib.contextmanager
def mounted(image: VmImage, tmp_path: Path) -> Iterator[Path]:
    """The image's root filesystem (ext4 on the whole disk), read-write on a copy."""
    require_root()
    require_tools(["qemu-img", "mount", "umount"])
    raw, root = tmp_path / "image.raw", tmp_path / "root"
    run(["qemu-img", "convert", "-O", "raw", str(image.qcow2), str(raw)], timeout=900)
    root.mkdir()
    run(["mount", "-o", "loop", str(raw), str(root)], timeout=120)
    try:
        yield root
    finally:
        run(["umount", str(root)], timeout=120, check=False)
        raw.unlink(missing_ok=True)


def test_on_the_image_the_packages_step_finds_everything(image: VmImage, tmp_path: Path) -> None:
    """With a prebuilt image: the step a compute node of the dev stack gets (and the one Packer ran)
    installs nothing. And the image carries no identity of the build VM."""
    spec = loaded("dev").spec
    node = next(n for n in plan_nodes(spec) if n.role is Role.COMPUTE)
    steps = {
        "node": render_packages_script(packages_for(spec, node)).content,
        "image": render_packages_script(role_image_packages(Role.COMPUTE)).content,
    }
    with mounted(image, tmp_path) as root:
        for name, content in steps.items():
            (root / f"tmp/{name}.sh").write_text(content)
            argv = ["unshare", "--mount", "--pid", "--fork", f"--mount-proc={root}/proc"]
            proc = run([*argv, "chroot", str(root), "bash", f"/tmp/{name}.sh"], check=False, timeout=300)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "[packages] packages ready" in proc.stderr and "installing" not in proc.stderr, proc.stderr
            (root / f"tmp/{name}.sh").unlink()
        assert not list((root / "etc/ssh").glob("ssh_host_*")), "host keys must come from the VM's first boot"
        assert not (root / "etc/munge/munge.key").exists(), "a munge key in an image is shared by every cluster"
        assert (root / "etc/machine-id").read_text() == ""
        assert not (root / "root/.ssh/authorized_keys").exists(), "the build's login must not stay"
        assert not (root / "var/lib/cloud/instance").exists(), "cloud-init must start from scratch"
        assert not (root / "usr/sbin/policy-rc.d").exists()
        assert not os.listdir(root / "var/lib/apt/lists") or set(os.listdir(root / "var/lib/apt/lists")) <= {
            "partial",
            "lock",
            "auxfiles",
        }
