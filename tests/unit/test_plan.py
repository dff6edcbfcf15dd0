"""Every committed stack validates and plans offline; the plan writes node files and resources.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hyperscaler.cli import main
from hyperscaler.plan import format_tree, run_plan, write_plan
from tests.stacks import ROOT, STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_stack_validates(stack: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", stack]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize("stack", STACKS)
def test_stack_plans(stack: str, tmp_path: Path) -> None:
    result = run_plan(ROOT / f"Pulumi.{stack}.yaml")
    write_plan(result, tmp_path)
    resources = json.loads((tmp_path / "resources.json").read_text())
    assert {"type", "name", "parent", "provider", "inputs", "protect", "retain_on_delete", "depends_on"} <= set(
        resources[0]
    )
    names = {r["name"] for r in resources}
    assert len(names) == len(resources), "resource names must be unique"
    outputs = json.loads((tmp_path / "outputs.json").read_text())
    monitored = {"monitoring"} if result.stack.spec.monitoring.enabled else set()
    registry = {"registry"} if result.stack.spec.containers.enabled else set()
    expected = {"controller_address", "nodes", "canary", "known_hosts", "time_to_first_job_seconds"}
    assert set(outputs) == expected | monitored | registry
    hosts = outputs["known_hosts"].splitlines()
    assert len(hosts) == len(outputs["nodes"]) and all(" ssh-ed25519 AAAA" in line for line in hosts)
    assert outputs["canary"] == {"status": "not run yet"}  # mocks run no command
    assert outputs["time_to_first_job_seconds"] is None
    for node, info in outputs["nodes"].items():
        seed = tmp_path / node / "var/lib/cloud/seed/nocloud"
        user_data = (seed / "user-data").read_text()
        assert user_data.startswith("#cloud-config\n")
        assert yaml.safe_load(user_data)["hostname"] == node
        assert (tmp_path / node / "etc/hosts").read_text().count("\n") > 3
        assert info["ssh"].endswith(f"@{info['management_address']}")
    controller = outputs["controller_address"]
    for ui in outputs.get("monitoring", {}).values():
        # a URL on the admin's own machine, and the tunnel that carries it to the controller's loopback
        port = ui["url"].removeprefix("http://localhost:").rstrip("/")
        assert ui["ssh_tunnel"].startswith(f"ssh -N -L {port}:127.0.0.1:{port} ")
        assert ui["ssh_tunnel"].endswith(f"@{controller}")


def test_a_plan_exports_only_its_own_outputs() -> None:
    """Two plans in one process: the second sees none of the first's outputs (here, `monitoring`)."""
    assert "monitoring" in run_plan(ROOT / "Pulumi.workstation.yaml").outputs
    assert "monitoring" not in run_plan(ROOT / "Pulumi.dev.yaml").outputs


def test_dev_plan_tree_lists_every_piece() -> None:
    tree = format_tree(run_plan(ROOT / "Pulumi.dev.yaml").records)
    for needle in (
        "hyperscaler:hpc:Controller  dev-controller",
        "hyperscaler:hpc:StorageNode  dev-storage-01",
        "hyperscaler:hpc:ComputeNode  dev-cpu-02",
        "libvirt:index/network:Network  dev-ws1-net-mgmt",
        "libvirt:index/cloudInitDisk:CloudInitDisk  dev-cpu-01-cloudinit",
        "libvirt:index/domain:Domain  dev-cpu-01-domain",
        "[protected]",
    ):
        assert needle in tree


def test_plan_masks_encrypted_secrets(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.sec.yaml"
    stack.write_text((ROOT / "Pulumi.dev.yaml").read_text() + "  hyperscaler:sshPrivateKey:\n    secure: v1:abc:def\n")
    result = run_plan(stack)
    write_plan(result, tmp_path / "out")
    text = (tmp_path / "out" / "resources.json").read_text()
    assert "v1:abc:def" not in text
    assert "[secret: encrypted" not in text  # the placeholder itself is a secret and gets masked


def test_make_plan_command_runs_as_a_user_would(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hyperscaler", "plan", "dev", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hyperscaler:hpc:HpcCluster  dev" in proc.stdout
    assert (tmp_path / "controller" / "etc" / "hosts").exists()
