"""Fuzzing the loader: whatever a stack file holds, the answer is a spec or a ConfigError, never a crash."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import ConfigError, StackInputs, build_spec
from tests.stacks import ROOT

BASE = yaml.safe_load((ROOT / "Pulumi.workstation.yaml").read_text())["config"]["hyperscaler:cluster"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.integers(10**6, 10**30),
    st.text(min_size=200, max_size=400),
    st.sampled_from(["0-99999", "0-4000000000", "qemu+ssh:///system", "a.b", "1:00:00", "INFINITE\nx", " "]),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.just("0000:41:00.0"),
    st.just("10.77.0.0/24"),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)
PATHS = [
    ("name",),
    ("hosts", "0", "cpu"),
    ("networks", "management", "mtu"),
    ("networks", "management", "domain"),
    ("slurm", "os_headroom_mib"),
    ("controller", "disk_gib"),
    ("images", "debian-12"),
    ("preset",),
    ("hosts",),
    ("networks", "management", "cidr"),
    ("networks", "interconnect"),
    ("controller", "vcpus"),
    ("controller", "address_offset"),
    ("compute",),
    ("storage",),
    ("slurm", "options"),
    ("slurm", "partitions"),
    ("mig",),
    ("ssh", "public_keys"),
    ("images",),
    ("beegfs", "enabled"),
]


def mutate(raw: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    node: Any = out
    for key in path[:-1]:
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
            continue
        if not isinstance(node, dict):
            return out
        node = node.setdefault(key, {})
    if isinstance(node, dict):
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), VALUES, st.booleans()), min_size=1, max_size=3))
def test_loader_never_crashes(mutations: list[tuple[tuple[str, ...], Any, bool]]) -> None:
    raw: dict[str, Any] = BASE
    for path, value, delete in mutations:
        raw = mutate(raw, path, value, delete)
    try:
        build_spec(StackInputs("Pulumi.fuzz.yaml", raw))
    except ConfigError as error:
        assert error.findings and "Pulumi.fuzz.yaml" in error.report()
