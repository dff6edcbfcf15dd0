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
from tests.engine import Stack
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
    # the data volumes and the pool that holds them
    assert protected and all(("libvirt:index/volume:Volume" in urn or "pool:Pool" in urn) for urn in protected)
    assert sum("pool:Pool" in urn for urn in protected) == 1
    stack.pulumi("state", "unprotect", "--all", "--yes")
    stack.pulumi("destroy", "--yes")
    assert not json.loads(stack.pulumi("stack", "export").stdout)["deployment"].get("resources")


def test_renamed_component_token_keeps_vms_and_volumes(stack: Stack) -> None:
    """A stack deployed while ComputeNode had another token (as an older release would have it), then
    updated by the current program with that token listed as former (components/identity.py): the real
    engine carries the nodes' VMs and volumes over through the aliases instead of replacing them."""
    identity = stack.project / "components" / "identity.py"
    original = identity.read_text()
    old = "hyperscaler:legacy:Worker"
    # The older release: ComputeNode's token was `old`.
    identity.write_text(original + f'\nTYPES["ComputeNode"] = ComponentType("{old}")\n')
    stack.pulumi("up", "--yes")
    before = json.loads(stack.pulumi("stack", "export").stdout)["deployment"]["resources"]
    assert any(old in r["urn"] for r in before)
    # The current release: the token changed, and the old one is declared former.
    identity.write_text(
        original + f'\nTYPES["ComputeNode"] = ComponentType("hyperscaler:hpc:ComputeNode", ("{old}",))\n'
    )
    plan = preview_json(stack)
    touched = [
        (s["op"], step_type(s))
        for s in plan["steps"]
        if s["op"] in ("create", "delete", "replace", "create-replacement", "delete-replaced")
    ]
    assert not touched, touched
    stack.pulumi("up", "--yes")
    after = json.loads(stack.pulumi("stack", "export").stdout)["deployment"]["resources"]
    assert not any(old in r["urn"] for r in after)
    assert sum("domain:Domain" in r["urn"] for r in after) == sum("domain:Domain" in r["urn"] for r in before)
    # Without the alias the same change would replace them: the test can fail.
    identity.write_text(original + f'\nTYPES["ComputeNode"] = ComponentType("{old}-again")\n')
    ops = {s["op"] for s in preview_json(stack)["steps"] if "domain:Domain" in s["urn"]}
    assert "create" in ops or "replace" in ops, ops
