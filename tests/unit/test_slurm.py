"""SLURM renderers and the deployment plan: golden files, merging, ownership and restart keys."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from config import ConfigError, StackInputs, build_spec
from config.models import ClusterSpec
from config.topology import plan_nodes
from render.slurm import (
    global_options,
    partitions,
    render_cgroup_conf,
    render_gres_conf,
    render_slurm_conf,
    render_slurmdbd_conf,
    restart_key_lines,
)
from render.slurm_deploy import ordered_steps, slurm_plan
from tests.stacks import STACKS, loaded

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR test"


def spec_with(**overrides: object) -> ClusterSpec:
    """Both tiers, schema and checks, as a stack file gets them."""
    raw = {"preset": "dev", "name": "dev", "ssh": {"public_keys": [KEY]}, **overrides}
    return build_spec(StackInputs("Pulumi.test.yaml", raw)).spec


@pytest.mark.parametrize("stack", STACKS)
def test_slurm_files_match_golden(stack: str, golden: Callable[[str, str], None]) -> None:
    spec = loaded(stack).spec
    nodes = plan_nodes(spec)
    golden(f"{stack}/slurm/slurm.conf", render_slurm_conf(spec, nodes))
    golden(f"{stack}/slurm/gres.conf", render_gres_conf(spec, nodes))
    golden(f"{stack}/slurm/cgroup.conf", render_cgroup_conf(spec.slurm.cgroup_plugin))
    golden(f"{stack}/slurm/slurmdbd.conf", render_slurmdbd_conf(spec, nodes, "PASSWORD-PLACEHOLDER"))


def test_node_lines_follow_vm_size_and_topology() -> None:
    spec = loaded("workstation").spec
    conf = render_slurm_conf(spec, plan_nodes(spec))
    line = next(x for x in conf.splitlines() if x.startswith("NodeName="))
    assert line.startswith("NodeName=gpu-[01-02] NodeAddr=10.77.0.100,10.77.0.101 CPUs=12 ")
    assert "SocketsPerBoard=1 CoresPerSocket=6 ThreadsPerCore=2" in line
    assert f"RealMemory={49152 - 1024}" in line and "Gres=gpu:h100:1" in line and "Features=gpu,h100" in line


def test_required_plugins_and_no_obsolete_keys() -> None:
    spec = loaded("dev").spec
    conf = render_slurm_conf(spec, plan_nodes(spec))
    for needle in (
        "SelectType=select/cons_tres",
        "ProctrackType=proctrack/cgroup",
        "TaskPlugin=task/cgroup,task/affinity",
        "StateSaveLocation=/var/lib/hyperscaler/state/slurmctld",
        "AccountingStorageType=accounting_storage/slurmdbd",
        "SlurmctldHost=controller(10.77.0.10)",
    ):
        assert needle in conf
    cgroup = render_cgroup_conf()
    assert "CgroupAutomount" not in cgroup
    assert {"ConstrainCores=yes", "ConstrainDevices=yes", "ConstrainRAMSpace=yes"} <= set(cgroup.splitlines())


def test_default_partitions() -> None:
    cpu_only = loaded("dev").spec
    assert [(p.name, p.default) for p in partitions(cpu_only, plan_nodes(cpu_only))] == [("cpu", True)]
    mixed = loaded("cluster").spec
    parts = partitions(mixed, plan_nodes(mixed))
    assert [(p.name, p.groups) for p in parts] == [("cpu", ["cpu"]), ("gpu", ["gpu"])]


def test_user_options_merge_over_defaults() -> None:
    spec = spec_with(slurm={"options": {"MaxJobCount": "50000", "SlurmctldDebug": "debug"}})
    options = global_options(spec, plan_nodes(spec))
    assert options["MaxJobCount"] == "50000" and options["SlurmctldDebug"] == "debug"
    assert list(options) == sorted(options, key=str.lower)


@pytest.mark.parametrize("key", ["SelectType", "slurmctldhost", "NodeName", "AccountingStorageType"])
def test_owned_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=f"slurm.options.{key}: {key} cannot be set here"):
        spec_with(slurm={"options": {key: "x"}})


def test_accounting_off_has_no_slurmdbd() -> None:
    spec = spec_with(slurm={"accounting": {"enabled": False}})
    conf = render_slurm_conf(spec, plan_nodes(spec))
    assert "AccountingStorageType=accounting_storage/none" in conf and "AccountingStorageHost" not in conf
    ctl = slurm_plan(spec, plan_nodes(spec))[0]
    assert "accounting" not in [s.name for s in ctl.steps]
    assert "/etc/slurm/slurmdbd.conf" not in ctl.secret_paths


def test_gres_conf_lists_device_files() -> None:
    spec = loaded("workstation").spec
    assert "NodeName=gpu-[01-02] Name=gpu Type=h100 File=/dev/nvidia0" in render_gres_conf(spec, plan_nodes(spec))
    two = spec_with(
        hosts=[
            {
                "name": "ws1",
                "cpu": {"cores_per_socket": 8, "threads_per_core": 2},
                "memory_mib": 65536,
                "gpus": [
                    {"address": f"0000:{b}:00.0", "model": "l40s", "iommu_group": g} for b, g in (("41", 1), ("42", 2))
                ],
            }
        ],
        compute=[{"name": "gpu", "count": 1, "vcpus": 4, "memory_mib": 8192, "gpus_per_node": 2}],
    )
    assert "Type=l40s File=/dev/nvidia[0-1]" in render_gres_conf(two, plan_nodes(two))


def test_partition_change_does_not_touch_restart_keys() -> None:
    before = spec_with()
    after = spec_with(
        slurm={
            "partitions": [{"name": "batch", "default": True, "max_time": "2-00:00:00"}],
            "options": {"MaxJobCount": "1000"},
        }
    )
    lines = [restart_key_lines(render_slurm_conf(s, plan_nodes(s))) for s in (before, after)]
    assert lines[0] == lines[1]
    grown = spec_with(compute=[{"name": "cpu", "count": 1, "vcpus": 2, "memory_mib": 4096}])
    assert restart_key_lines(render_slurm_conf(grown, plan_nodes(grown))) != lines[0]


def test_steps_run_in_the_documented_order() -> None:
    spec = loaded("dev").spec
    order = [s.key for s in ordered_steps(slurm_plan(spec, plan_nodes(spec)))]
    pos = {k: i for i, k in enumerate(order)}
    assert pos["controller:munge"] < pos["controller:accounting"] < pos["controller:slurmctld"]
    for node in ("cpu-01", "cpu-02"):
        assert pos[f"{node}:munge"] < pos[f"{node}:slurmd"] < pos["controller:reconfigure"]
        assert pos["controller:slurmctld"] < pos[f"{node}:slurmd"]
    assert order[-1] == "controller:canary"


def test_scripts_carry_their_parameters_quoted() -> None:
    spec = loaded("cluster").spec
    ctl = slurm_plan(spec, plan_nodes(spec))[0]
    script = next(s.script for s in ctl.steps if s.name == "canary").content
    assert "readonly COMPUTE_NODES='cpu-[01-04],gpu-[01-04]'" in script
    assert "readonly GPU_TYPES=a100" in script
    assert script.startswith("#!/usr/bin/env bash\n")
