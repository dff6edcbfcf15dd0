"""`hyperscaler image build` around a stand-in `packer` on PATH: what it hands Packer (the staged templates,
the plugin file only for Packer 1.7+, the role's own packages step, the pinned base), what it writes (the
image named by its sha256, a manifest a stack loads), and how it fails. The real Packer 1.6.6 build is
tests/integration/test_packer_images.py's.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import pytest

from config import load_stack_file
from config.packages import role_image_packages
from config.topology import Role
from hyperscaler import imagebuild
from hyperscaler.cli import main
from hyperscaler.imagefetch import sha256_of
from render.packages import render_packages_script
from tests.unit.test_images import stack_file

# The stand-in: `packer version` prints $FAKE_PACKER_VERSION; every call is logged as JSON with the files
# of the directory it was given; `build` writes a qcow2 header (2 GiB virtual) where the template would.
FAKE_PACKER = """\
import json, os, struct, sys
argv = sys.argv[1:]
if argv[:1] == ["version"]:
    print("Packer v" + os.environ["FAKE_PACKER_VERSION"])
    sys.exit(0)
variables = dict(v.split("=", 1) for flag, v in zip(argv, argv[1:]) if flag == "-var")
record = {"argv": argv, "files": sorted(os.listdir(argv[-1])), "vars": variables}
role = next((a.split("=")[1].split(".")[0] for a in argv if a.startswith("-only=")), None)
if argv[0] == "build" and role:
    record["script"] = open(os.path.join(variables["packages_dir"], role + ".sh")).read()
with open(os.environ["FAKE_PACKER_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
if os.environ.get("FAKE_PACKER_FAIL"):
    print("==> " + role + ".qemu.role: Build failed: stand-in failure")
    sys.exit(1)
if argv[0] == "build":
    out = os.path.join(variables["output_dir"], role)
    os.makedirs(out)
    with open(os.path.join(out, role + ".qcow2"), "wb") as image:
        image.write(b"QFI\\xfb" + struct.pack(">I", 3) + bytes(16) + struct.pack(">Q", 2 * 2**30) + role.encode())
"""


@pytest.fixture
def fake_packer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    packer = bin_dir / "packer"
    packer.write_text(f"#!{sys.executable}\n{FAKE_PACKER}")
    packer.chmod(0o755)
    log = tmp_path / "packer-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PACKER_LOG", str(log))
    monkeypatch.setenv("FAKE_PACKER_VERSION", "1.6.6")
    monkeypatch.setenv("HYPERSCALER_IMAGE_CACHE", str(tmp_path / "cache"))
    return log


def calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "base.qcow2"
    path.write_bytes(b"QFI\xfb" + struct.pack(">I", 3) + bytes(16) + struct.pack(">Q", 2**30))
    return path


def build(base: Path, out: Path, *extra: str, sha256: str | None = None) -> int:
    argv = ["image", "build", "--base", str(base), "--base-sha256", sha256 or sha256_of(base), "--out", str(out)]
    return main([*argv, "--accelerator", "tcg", *extra])


def test_build_hands_packer_the_templates_the_base_and_the_roles_own_step(
    fake_packer: Path, base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "images"
    assert build(base, out, "--role", "compute", "--role", "storage") == 0
    manifest = Path(capsys.readouterr().out.strip())
    assert manifest == out / "manifest.json"
    builds = [c for c in calls(fake_packer) if c["argv"][0] == "build"]  # type: ignore[index]
    assert [c["argv"][2] for c in builds] == ["-only=compute.qemu.role", "-only=storage.qemu.role"]  # type: ignore[index]
    for call, role in zip(builds, (Role.COMPUTE, Role.STORAGE), strict=True):
        # Packer 1.6.6: the templates alone, no plugin requirement and no `packer init`.
        assert call["files"] == sorted(p.name for p in imagebuild.template_files())
        assert call["script"] == render_packages_script(role_image_packages(role)).content
        variables = call["vars"]
        assert isinstance(variables, dict)
        assert (variables["base_image"], variables["base_sha256"]) == (str(base), sha256_of(base))
        assert variables["accelerator"] == "tcg" and variables["scripts_dir"] == str(imagebuild.SCRIPTS_DIR)
    assert not [c for c in calls(fake_packer) if c["argv"][0] == "init"]  # type: ignore[index]
    # Each image is named by its checksum; the work directories are gone.
    listed = json.loads(manifest.read_text())
    assert sorted(listed["images"]) == ["compute", "storage"]
    for role, entry in listed["images"].items():
        path = Path(entry["source"])
        assert path.parent == out and path.name == f"{role}-{entry['sha256'][:12]}.qcow2"
        assert sha256_of(path) == entry["sha256"] and entry["virtual_size_gib"] == 2
        assert listed["builds"][role]["packages"] == list(role_image_packages(imagebuild.ROLES[role]).all)
        assert listed["builds"][role]["base"] == {"source": str(base), "sha256": sha256_of(base)}
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    # What `make images` wrote is what a stack references.
    images = {"debian-12": {"manifest": str(manifest), "entry": "compute"}}
    spec = load_stack_file(stack_file(tmp_path, {"images": images})).spec
    assert spec.images["debian-12"].sha256 == listed["images"]["compute"]["sha256"]


def test_current_packer_gets_the_plugin_file_and_packer_init(
    fake_packer: Path, base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PACKER_VERSION", "1.11.2")
    assert build(base, tmp_path / "images", "--role", "compute") == 0
    init, packer_build = calls(fake_packer)
    assert init["argv"][0] == "init" and packer_build["argv"][0] == "build"  # type: ignore[index]
    expected = sorted([imagebuild.PLUGINS_FILE.name, *(p.name for p in imagebuild.template_files())])
    assert init["files"] == packer_build["files"] == expected


def test_a_rebuild_adds_to_the_manifest(fake_packer: Path, base: Path, tmp_path: Path) -> None:
    out = tmp_path / "images"
    assert build(base, out, "--role", "compute") == 0
    assert build(base, out, "--role", "controller") == 0
    assert sorted(json.loads((out / "manifest.json").read_text())["images"]) == ["compute", "controller"]


def test_a_base_that_does_not_match_its_pin_is_never_booted(
    fake_packer: Path, base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build(base, tmp_path / "images", sha256="0" * 64) == 1
    assert "sha256" in capsys.readouterr().err
    assert calls(fake_packer) == []
    assert not (tmp_path / "images").exists()


def test_a_failed_build_leaves_no_image_and_says_where_the_log_is(
    fake_packer: Path, base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_PACKER_FAIL", "1")
    out = tmp_path / "images"
    assert build(base, out, "--role", "compute") == 1
    err = capsys.readouterr().err
    assert "rc=1" in err and "stand-in failure" in err and str(out / "compute.log") in err
    assert sorted(p.name for p in out.iterdir()) == ["compute.log"]


def test_bad_arguments_are_usage_errors(
    fake_packer: Path, base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build(base, tmp_path / "images", "--kernel", "/boot/vmlinuz") == 2
    assert "--kernel and --initrd go together" in capsys.readouterr().err
    assert build(base, tmp_path / "images", sha256="abc") == 2
    assert "--base-sha256" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        build(base, tmp_path / "images", "--role", "gpu")
    assert exited.value.code == 2 and "invalid choice: 'gpu'" in capsys.readouterr().err
    assert calls(fake_packer) == []
