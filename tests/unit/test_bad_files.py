"""Stack files that are broken as files, not as settings: each is refused by `validate` with a message that
names the file, in bounded time and memory, with no traceback (config/stackfile.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_stack_file
from config.stackfile import MAX_DEPTH
from tests.stacks import ROOT

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR x"
HEAD = f"config:\n  hyperscaler:cluster:\n    preset: dev\n    name: dev\n    ssh: {{public_keys: ['{KEY}']}}\n"


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess: a loader that never finishes fails the test at the timeout instead of hanging."""
    return subprocess.run(
        [sys.executable, "-m", "hyperscaler", "validate", "--file", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(path: Path, *expected: str) -> str:
    proc = validate(path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    assert str(path) in proc.stderr, out
    for text in expected:
        assert text in proc.stderr, out
    return proc.stderr


def test_binary_content(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bin.yaml"
    path.write_bytes(HEAD.encode() + b"    # caf\xe9\n" + bytes(range(256)))
    refused(path, "not UTF-8 text", "line 6")


def test_deep_nesting(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.deep.yaml"
    depth = 5000
    path.write_text(HEAD + "    slurm: {options: " + "[" * depth + "]" * depth + "}\n")
    refused(path, f"more than {MAX_DEPTH} levels deep")


def test_deep_block_nesting(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.deepblock.yaml"
    lines = [f"{' ' * (i + 4)}k{i}:" for i in range(500)]
    path.write_text(HEAD + "\n".join(lines) + " 1\n")
    refused(path, "levels deep")


def test_alias_bomb(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 30)]
    body = "\n".join(f"      {line}" for line in lines)
    path.write_text(HEAD + "    slurm:\n      options:\n" + body + "\n")
    refused(path, "alias bomb")


def test_alias_that_contains_itself(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.loop.yaml"
    path.write_text(HEAD + "    compute: &loop [*loop]\n")
    refused(path, "refers to a value that contains it")


def test_huge_value_is_quoted_briefly(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.huge.yaml"
    path.write_text(HEAD.replace("name: dev", "name: " + "x" * 500_000))
    err = refused(path, "hyperscaler:cluster.name", "is not a valid hostname", "(500002 characters)")
    assert len(err) < 2000, f"the message quotes {len(err)} characters"


def test_huge_key_is_quoted_briefly(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.hugekey.yaml"
    path.write_text(HEAD + f"    {'k' * 300_000}: 1\n")
    err = refused(path)
    assert len(err) < 3000, f"the message quotes {len(err)} characters"


def test_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.large.yaml"
    path.write_text(HEAD + "#" * (2 * 1024 * 1024) + "\n")
    refused(path, "a stack file is at most")


def test_private_key_under_another_project_key(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.leak.yaml"
    path.write_text(HEAD + "  other:deployKey: |\n    -----BEGIN RSA PRIVATE KEY-----\n    MIIE\n")
    refused(path, "other:deployKey holds a private key in plain text")


def test_dotted_dns_domain_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.domain.yaml"
    path.write_text(HEAD + "    networks: {management: {domain: hpc.example.com}}\n")
    assert load_stack_file(path).spec.networks.management.domain == "hpc.example.com"


def test_yaml_12_scalars_as_pulumi_reads_them(tmp_path: Path) -> None:
    """Pulumi's YAML library reads `1:00:00` and `on` as strings (YAML 1.2); PyYAML's 1.1 default would not."""
    path = tmp_path / "Pulumi.yaml12.yaml"
    path.write_text(HEAD + "    slurm: {partitions: [{name: on, default: true, max_time: 1:00:00}]}\n")
    part = load_stack_file(path).spec.slurm.partitions[0]
    assert (part.name, part.max_time) == ("on", "1:00:00")


@pytest.mark.parametrize("domain", ["-hpc", "hpc..example", "1hpc", "HPC", "a" * 64])
def test_bad_dns_domain(tmp_path: Path, domain: str) -> None:
    path = tmp_path / "Pulumi.baddomain.yaml"
    path.write_text(HEAD + f"    networks: {{management: {{domain: '{domain}'}}}}\n")
    with pytest.raises(ConfigError, match=r"networks\.management\.domain"):
        load_stack_file(path)
