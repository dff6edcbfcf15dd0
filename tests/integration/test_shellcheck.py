"""Every remote script and every command line the program sends passes the real shellcheck."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hyperscaler.plan import run_plan
from tests.stacks import ROOT, STACKS

pytestmark = pytest.mark.integration


def shellcheck() -> str:
    path = shutil.which("shellcheck")
    assert path, "shellcheck is not installed: run `make deps` (apt-get install shellcheck)"
    return path


def run_shellcheck(paths: list[Path], shell: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [shellcheck(), "-S", "style", "-f", "gcc"] + (["-s", shell] if shell else []) + [str(p) for p in paths]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("stack", STACKS)
def test_every_script_passes_shellcheck(stack: str, tmp_path: Path) -> None:
    """Every script any Command installs on any node, as the offline plan collects them."""
    paths = []
    for node, files in run_plan(ROOT / f"Pulumi.{stack}.yaml").files.items():
        for remote_path, content in files.items():
            # step scripts, and the SIF build job and its command (containers)
            if remote_path.endswith((".sh", ".sbatch")) or remote_path.startswith("/usr/local/bin/"):
                path = tmp_path / node / Path(remote_path).name
                path.parent.mkdir(exist_ok=True)
                path.write_text(content)
                paths.append(path)
    names = {p.name for p in paths}
    assert {"packages.sh", "munge.sh", "slurmd.sh", "slurmctld.sh", "membership.sh", "canary.sh"} <= names, names
    if stack == "workstation":  # its GPUs are partitioned with MIG; containers are on
        assert {"mig.sh", "mig-gres.sh"} <= names, names
        containers = {"docker.sh", "registry.sh", "container-trust.sh", "nvidia-toolkit.sh", "enroot.sh"}
        assert containers | {"apptainer.sh", "sif-build.sbatch", "hpc-sif-build"} <= names, names
    proc = run_shellcheck(paths)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_command_line_passes_shellcheck(tmp_path: Path) -> None:
    result = run_plan(ROOT / "Pulumi.workstation.yaml")
    paths = []
    for i, rec in enumerate(r for r in result.records if r.type == "command:remote:Command"):
        for field in ("create", "delete"):
            text = rec.plain_inputs.get(field)
            if text:
                path = tmp_path / f"{i}-{field}.sh"
                path.write_text(str(text) + "\n")
                paths.append(path)
    proc = run_shellcheck(paths, shell="bash")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_catches_a_bad_script(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nrm -rf $DIR/*\n")
    assert run_shellcheck([bad]).returncode == 1
