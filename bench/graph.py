"""Measures of a plan's resource graph for `make bench`: its depth, and what growing the stack changes."""

from __future__ import annotations

from pathlib import Path

from config.topology import Role, plan_nodes
from hyperscaler.diff import resource_changes
from hyperscaler.mocks import Registration
from hyperscaler.plan import run_plan

COMMAND = "command:remote:Command"


def depth(records: list[Registration]) -> int:
    """The longest chain of dependencies (depends_on and property dependencies) among custom resources:
    how many rounds the engine needs at least, whatever its parallelism."""
    by_urn = {r.urn: r for r in records if r.custom}
    memo: dict[str, int] = {}

    def longest(urn: str) -> int:
        if urn not in memo:
            rec = by_urn[urn]
            deps = set(rec.depends_on) | {u for urns in rec.property_dependencies.values() for u in urns}
            memo[urn] = 1 + max((longest(d) for d in deps if d in by_urn), default=0)
        return memo[urn]

    return max(longest(urn) for urn in by_urn)


def touched_by(before: Path, after: Path) -> dict[str, int]:
    """Resources that change from one stack file to the other, and the Commands among them that would
    open an SSH session on a node of the first stack other than the controller."""
    old, new = run_plan(before), run_plan(after)
    existing = {n.mgmt_ip for n in plan_nodes(old.stack.spec) if n.role is not Role.CONTROLLER}
    changes = resource_changes(old.records, new.records)
    by_name = {r.name: r for r in new.records}
    ssh = 0
    for change in changes:
        rec = by_name.get(change.name)
        if change.type == COMMAND and change.action != "delete" and rec is not None:
            ssh += rec.plain_inputs["connection"]["host"] in existing
    return {"changed": len(changes), "ssh_on_existing": ssh}
