"""Node names and addresses come from positions only: growing a group never renames a node."""

from __future__ import annotations

from config.models import ClusterSpec
from config.topology import Role, plan_nodes
from tests.stacks import loaded


def _with_compute_count(count: int) -> ClusterSpec:
    spec = loaded("dev").spec
    group = spec.compute[0].model_copy(update={"count": count})
    return spec.model_copy(update={"compute": [group]})


def test_growing_a_group_past_99_renames_no_node() -> None:
    before = {n.name: n.mgmt_ip for n in plan_nodes(_with_compute_count(99)) if n.role is Role.COMPUTE}
    after = {n.name: n.mgmt_ip for n in plan_nodes(_with_compute_count(101)) if n.role is Role.COMPUTE}
    assert len(before) == 99 and len(after) == 101
    assert {k: after.get(k) for k in before} == before
    assert sorted(set(after) - set(before)) == [f"{loaded('dev').spec.compute[0].name}-{i}" for i in (100, 101)]
