"""Bad stack files, written the way a new user gets them wrong. Each must fail validation with the
field path and message in its `# expect:` header, through the CLI, with exit 1 and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_stack_file
from config.findings import format_finding

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((ROOT / "tests" / "fixtures" / "bad_stacks").glob("*.yaml"))


def expectations(path: Path) -> list[str]:
    return [
        line.removeprefix("# expect: ").rstrip("\n")
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]


def test_there_are_bad_stacks() -> None:
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_stack_reports_the_field(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_stack_file(path)
    report = info.value.report()
    assert str(path) in report
    for expected in expectations(path):
        key = "hyperscaler:cluster" + ("." + expected if not expected.startswith(":") else expected)
        assert key in report, f"expected {key!r} in:\n{report}"


@pytest.mark.parametrize("path", BAD[:6], ids=[p.stem for p in BAD[:6]])
def test_cli_exits_1_without_traceback(path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hyperscaler", "validate", "--file", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "error:" in proc.stderr and str(path) in proc.stderr


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.multi.yaml"
    stack.write_text(
        (ROOT / "tests/fixtures/bad_stacks/unknown-host.yaml").read_text()
        + "    controller: {host: nowhere}\n    slurm: {partitions: [{name: p, groups: [zzz]}]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_stack_file(stack)
    paths = {f.path for f in info.value.findings if f.is_error}
    assert {"compute[0].host", "controller.host", "slurm.partitions[0].groups[0]"} <= paths


def test_findings_name_the_line(tmp_path: Path) -> None:
    path = ROOT / "tests/fixtures/bad_stacks/unknown-host.yaml"
    with pytest.raises(ConfigError) as info:
        load_stack_file(path)
    finding = next(f for f in info.value.findings if f.path == "compute[0].host")
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "host: ws9" in text)
    assert f"{path}:{line}:" in format_finding(str(path), finding, info.value.lines)


def test_missing_file_is_a_finding(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the stack file"):
        load_stack_file(tmp_path / "Pulumi.nope.yaml")


def test_bad_usage_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hyperscaler", "validate", "no-such-stack"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "known stacks" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "hyperscaler", "frobnicate"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
