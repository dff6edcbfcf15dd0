"""The `dev` stack through the real Pulumi CLI, engine, state backend and secrets, offline.

The providers are stand-ins (e2e/stubprovider: the real ones cannot be built from the Go module
proxy here), so these tests prove the program, the engine's graph and diffs, state and secret
handling, not what libvirt or SSH would do. Each takes a few seconds once the engine is built.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pulumi
import pytest

from components.cluster import HpcCluster, HpcClusterArgs
from hyperscaler.mocks import RecordingMonitor
from tests.e2e.conftest import Stack
from tests.stacks import loaded

pytestmark = pytest.mark.e2e

STACK_TYPE = "pulumi:pulumi:Stack"


def preview_json(stack: Stack, *args: str) -> dict[str, Any]:
    result = stack.pulumi("preview", "--json", *args)
    return json.loads(result.stdout)


def step_type(step: dict[str, Any]) -> str:
    # urn:pulumi:<stack>::<project>::<parent types $ ... $ type>::<name>
    return step["urn"].split("::")[2].split("$")[-1]


def mock_types(monitor: RecordingMonitor) -> Counter[str]:
    @pulumi.runtime.test
    def program() -> pulumi.Output:
        key = pulumi.Output.secret("not-a-key")
        cluster = HpcCluster("dev", HpcClusterArgs(loaded("dev").spec, key))
        return pulumi.Output.all(*(node.domain_id for node in cluster.nodes.values()))

    program()
    return Counter(r.type for r in monitor.records)


def test_preview_plans_what_the_mocks_plan(stack: Stack, monitor: RecordingMonitor) -> None:
    plan = preview_json(stack, "--diff")
    ops = Counter(step["op"] for step in plan["steps"])
    assert ops == {"create": len(plan["steps"])}, ops
    assert not [d for d in plan.get("diagnostics", []) if d.get("severity") == "error"]
    engine = Counter(step_type(s) for s in plan["steps"] if step_type(s) != STACK_TYPE)
    assert engine == mock_types(monitor)
    assert engine["libvirt:index/domain:Domain"] == 4  # controller, cpu-01, cpu-02, storage-01


def test_preview_shows_secrets_as_secret(stack: Stack) -> None:
    out = stack.pulumi("preview", "--diff").stdout
    assert "[secret]" in out
    assert "PRIVATE KEY" not in out
    assert stack.private_key.splitlines()[1] not in out


def test_up_noop_slurm_change_and_destroy(stack: Stack) -> None:
    stack.pulumi("up", "--yes")
    state = stack.pulumi("stack", "export").stdout
    assert stack.private_key.splitlines()[1] not in state, "the SSH private key is in the state in plain text"
    assert '"ciphertext"' in state

    stack.pulumi("preview", "--expect-no-changes")

    # A SLURM option is a reconfiguration: only SLURM Commands change, no domain is touched. Whether a
    # Command is updated or replaced is the provider's word, and these are stand-ins: check the types only.
    stack.pulumi("config", "set", "--path", "hyperscaler:cluster.slurm.options.SchedulerParameters", "bf_interval=60")
    plan = preview_json(stack)
    changed = Counter(step_type(s) for s in plan["steps"] if s["op"] != "same")
    assert changed, "a SLURM option change planned nothing"
    assert set(changed) == {"command:remote:Command"}, changed
    stack.pulumi("up", "--yes")
    stack.pulumi("preview", "--expect-no-changes")

    # Protected data volumes make a plain destroy fail as a whole, before deleting anything.
    refused = stack.pulumi("destroy", "--yes", ok=False)
    assert refused.returncode != 0
    assert "protected" in refused.stdout + refused.stderr
    stack.pulumi("destroy", "--yes", "--exclude-protected")
    left = json.loads(stack.pulumi("stack", "export").stdout)["deployment"]["resources"]
    protected = [r["urn"] for r in left if r.get("protect")]
    assert protected and all("libvirt:index/volume:Volume" in urn for urn in protected)
    stack.pulumi("state", "unprotect", "--all", "--yes")
    stack.pulumi("destroy", "--yes")
    assert not json.loads(stack.pulumi("stack", "export").stdout)["deployment"].get("resources")
