"""Tier four: every node's rendered user-data passes the real `cloud-init schema` (Debian's cloud-init)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from config.topology import plan_nodes
from render.cloudinit import render_network_config, render_user_data
from tests.stacks import STACKS, fixed_host_key, loaded

pytestmark = pytest.mark.integration


def cloud_init() -> str:
    path = shutil.which("cloud-init") or "/usr/bin/cloud-init"
    assert Path(path).exists(), "cloud-init is not installed: run `make deps` (apt-get install cloud-init)"
    return path


@pytest.mark.parametrize("stack", STACKS)
def test_user_data_passes_cloud_init_schema(stack: str, tmp_path: Path) -> None:
    spec = loaded(stack).spec
    nodes = plan_nodes(spec)
    for node in nodes:
        path = tmp_path / f"{node.name}.yaml"
        path.write_text(render_user_data(spec, node, fixed_host_key(node.name)))
        proc = subprocess.run(
            [cloud_init(), "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"{node.name}: {proc.stdout}{proc.stderr}"
        assert "Valid cloud-config" in proc.stdout


def test_cloud_init_schema_rejects_a_broken_document(tmp_path: Path) -> None:
    # The check above is only worth something if the tool says no to a bad document.
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\nwrite_files:\n  - content: x\n")
    proc = subprocess.run(
        [cloud_init(), "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1


# cloud-init's own parser of network-config v2, run by the system python that owns the cloudinit package.
PARSE_NETWORK = """
import sys, yaml
from cloudinit.net.network_state import parse_net_config_data
from cloudinit.net.eni import Renderer
state = parse_net_config_data(yaml.safe_load(open(sys.argv[1])))
print(Renderer()._render_interfaces(state))
"""


@pytest.mark.parametrize("stack", STACKS)
def test_network_config_parses_and_renders(stack: str, tmp_path: Path) -> None:
    """The schema test above never reads network-config; cloud-init 22.4 rejected `to: default` at boot."""
    spec = loaded(stack).spec
    for node in plan_nodes(spec):
        path = tmp_path / f"{node.name}.yaml"
        path.write_text(render_network_config(spec, node))
        proc = subprocess.run(
            ["/usr/bin/python3", "-c", PARSE_NETWORK, str(path)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"{node.name}: {proc.stderr}"
        assert f"address {node.mgmt_ip}/" in proc.stdout and ("gw " in proc.stdout or "gateway" in proc.stdout)
