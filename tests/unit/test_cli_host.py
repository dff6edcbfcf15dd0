"""`hyperscaler doctor` and `hyperscaler inventory` from the command line, against the fixture hosts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config.models import Host
from hyperscaler.cli import host_needs, main
from tests.stacks import ROOT, loaded

HOSTS = ROOT / "tests" / "fixtures" / "hosts"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hyperscaler", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_inventory_prints_a_host_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "--root", str(HOSTS / "amd-2xh100"), "--host-name", "gpu1"]) == 0
    (entry,) = yaml.safe_load(capsys.readouterr().out)
    host = Host.model_validate(entry)
    assert host.name == "gpu1" and [g.numa_node for g in host.gpus] == [0, 1]


def test_inventory_of_a_host_without_iommu_says_null(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "--root", str(HOSTS / "iommu-off")]) == 0
    (entry,) = yaml.safe_load(capsys.readouterr().out)
    assert entry["gpus"][0]["iommu_group"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inventory", "--root", "/nonexistent/tree"], "not a directory"),
        (["inventory", "--root", str(HOSTS / "amd-2xh100"), "--host-name", "Bad_Name"], "not a valid hostname"),
        (["doctor", "--host", "hv1"], "also name a stack"),
        (["doctor", "dev", "--file", "Pulumi.dev.yaml"], "not both"),
        (["doctor", "nostack"], "no stack file"),
        (["doctor", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_usage_exits_2_without_traceback(argv: list[str], message: str) -> None:
    proc = run(*argv)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_doctor_without_a_stack_checks_the_host_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--root", str(HOSTS / "intel-geforce")]) == 0
    assert main(["doctor", "--root", str(HOSTS / "iommu-off")]) == 1
    assert "FAIL  iommu groups" in capsys.readouterr().out


def test_doctor_computes_what_the_stack_needs(capsys: pytest.CaptureFixture[str]) -> None:
    # workstation: 2 GPU VMs x 48 GiB in hugepages; controller 4 GiB + storage 4 GiB in normal pages;
    # volumes 30+10 (controller) + 2 x 100 (gpu) + 20+200 (storage)
    assert host_needs(loaded("workstation").spec, "ws1") == (98304, 8192, 470)  # + the BeeGFS metadata volume
    assert main(["doctor", "workstation", "--root", str(HOSTS / "amd-2xh100")]) == 1  # 64 pages free, 96 needed
    out = capsys.readouterr().out
    assert "host ws1 needs 98304 MiB in hugepages" in out
    assert "FAIL  hugepages: 64 of 64 1 GiB pages free (65536 MiB), but 98304 MiB are needed" in out
    assert "PASS  gpu 0000:c1:00.0 driver" in out


def test_doctor_with_an_unknown_host_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "cluster", "--host", "nope", "--root", str(HOSTS / "intel-geforce")]) == 1
    assert "host 'nope' is not in cluster.hosts (known: hv1, hv2, hv3)" in capsys.readouterr().out


def test_doctor_with_an_invalid_stack_reports_it(tmp_path: Path) -> None:
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text((ROOT / "tests/fixtures/bad_stacks/too-many-vcpus.yaml").read_text())
    proc = run("doctor", "--file", str(bad), "--root", str(HOSTS / "intel-geforce"))
    assert proc.returncode == 1 and "error:" in proc.stderr and "Traceback" not in proc.stderr
