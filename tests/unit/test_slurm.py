"""SLURM renderers and the deployment plan: golden files, merging, ownership and restart keys."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from config import ConfigError, StackInputs, build_spec
from config.models import ClusterSpec
from config.slurm_facts import is_time, time_seconds
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
    assert (
        f"RealMemory={49152 - 1024}" in line
        and "Gres=gpu:3g.40gb:1,gpu:2g.20gb:1,gpu:1g.10gb:2" in line
        and "Features=gpu,h100" in line
    )


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
    spec = loaded("cluster").spec
    assert "NodeName=gpu-[01-04] Name=gpu Type=a100 File=/dev/nvidia0" in render_gres_conf(spec, plan_nodes(spec))
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


# Each rule below was found by tests/integration/test_slurm_conf_property.py: the checks accepted the value,
# and a real slurmctld 22.05.8 refused it (the comment in config/slurm_facts.py quotes what it said).
@pytest.mark.parametrize(
    ("slurm", "path", "message"),
    [
        ({"options": {"KillWait": "65536"}}, "slurm.options.KillWait", "from 0 to 65535"),
        ({"options": {"TreeWidth": "0"}}, "slurm.options.TreeWidth", "from 1 to 65535"),
        ({"options": {"OverTimeLimit": "65536"}}, "slurm.options.OverTimeLimit", "65535 or UNLIMITED"),
        ({"options": {"SchedulerType": "SCHED/BACKFILL"}}, "slurm.options.SchedulerType", "one of sched/backfill"),
        ({"options": {"JobSubmitPlugins": "LOGGING"}}, "slurm.options.JobSubmitPlugins", "not a valid"),
        ({"options": {"JobSubmitPlugins": "lua"}}, "slurm.options.JobSubmitPlugins", "not a valid"),
        ({"options": {"TopologyPlugin": "topology/tree"}}, "slurm.options.TopologyPlugin", "not a valid"),
        ({"options": {"AcctGatherEnergyType": "acct_gather_energy/gpu"}}, "slurm.options.AcctGatherEnergyType", ""),
        ({"options": {"PrologFlags": "Alloc,RunInJob"}}, "slurm.options.PrologFlags", "not a valid"),
        ({"options": {"PrologFlags": "NoHold,X11"}}, "slurm.options.PrologFlags", "not a valid"),
        ({"options": {"PrologFlags": "contain,nohold"}}, "slurm.options.PrologFlags", "not a valid"),
        ({"options": {"GroupUpdateForce": "yes"}}, "slurm.options.GroupUpdateForce", "one of 0, 1"),
        ({"options": {"PropagateResourceLimits": "cpu"}}, "slurm.options.PropagateResourceLimits", ""),
        ({"options": {"PropagateResourceLimits": "ALL,STACK"}}, "slurm.options.PropagateResourceLimits", ""),
        ({"options": {"PropagateResourceLimitsExcept": "as"}}, "slurm.options.PropagateResourceLimitsExcept", ""),
        ({"options": {"JobAcctGatherParams": "OverMemoryKill"}}, "slurm.options.JobAcctGatherParams", ""),
        ({"options": {"JobAcctGatherParams": "UsePss,NoShared"}}, "slurm.options.JobAcctGatherParams", ""),
        ({"options": {"Licenses": "1:00:00"}}, "slurm.options.Licenses", "name[:count]"),
        ({"options": {"PriorityMaxAge": "35791394"}}, "slurm.options.PriorityMaxAge", "at most 24855-03:13:08"),
        ({"options": {"PriorityCalcPeriod": "35791394"}}, "slurm.options.PriorityCalcPeriod", "1 to 35791393"),
        ({"options": {"MaxJobId": "67043329"}}, "slurm.options.MaxJobId", "from 1 to 67043328"),
        ({"options": {"FirstJobId": "101", "MaxJobId": "100"}}, "slurm.options.FirstJobId", "above MaxJobId 100"),
        ({"options": {"PreemptMode": "SUSPEND"}}, "slurm.options.PreemptMode", "not a valid"),
        ({"options": {"PreemptMode": "OFF,CANCEL"}}, "slurm.options.PreemptMode", "not a valid"),
        ({"options": {"PreemptMode": "REQUEUE"}}, "slurm.options.PreemptMode", "with preempt/none it must be OFF"),
        ({"options": {"PreemptType": "preempt/qos"}}, "slurm.options.PreemptType", "needs PreemptMode"),
        (
            {"options": {"preempttype": "preempt/qos", "PreemptMode": "GANG"}},
            "slurm.options.PreemptMode",
            "needs PreemptMode",
        ),
        (
            {"options": {"JobContainerType": "job_container/tmpfs", "PrologFlags": "Alloc"}},
            "slurm.options.JobContainerType",
            "PrologFlags to include Contain",
        ),
        ({"options": {"SchedulerParameters": "bf_interval=60\\"}}, "slurm.options.SchedulerParameters", "backslash"),
        (
            {"partitions": [{"name": "p", "options": {"PreemptMode": "OFF,OFF"}}]},
            "slurm.partitions[0].options.PreemptMode",
            "not a valid",
        ),
        (
            {"partitions": [{"name": "p", "options": {"PriorityTier": "65536"}}]},
            "slurm.partitions[0].options.PriorityTier",
            "from 0 to 65535",
        ),
        (
            {"partitions": [{"name": "p", "options": {"DefaultTime": "35791394"}}]},
            "slurm.partitions[0].options.DefaultTime",
            "at most",
        ),
        (
            {"partitions": [{"name": "p", "options": {"MaxNodes": "1", "maxnodes": "2"}}]},
            "slurm.partitions[0].options.maxnodes",
            "also given as MaxNodes",
        ),
        ({"partitions": [{"name": "p", "max_time": "24855-03:13:09"}]}, "slurm.partitions[0].max_time", "at most"),
        ({"partitions": [{"name": "p", "max_time": 35791394}]}, "slurm.partitions[0].max_time", "longer than"),
    ],
)
def test_values_slurmctld_refuses_are_refused(slurm: dict[str, object], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        spec_with(slurm=slurm)
    found = [f for f in info.value.findings if f.is_error and f.path == path]
    assert found and any(message in f.message + " " + f.hint for f in found), info.value.report()


@pytest.mark.parametrize(
    "slurm",
    [
        {"options": {"KillWait": "65535", "OverTimeLimit": "UNLIMITED", "TreeWidth": "1"}},
        {"options": {"SchedulerType": "sched/builtin", "JobSubmitPlugins": "logging,throttle"}},
        {"options": {"PropagateResourceLimits": "ALL", "PropagateResourceLimitsExcept": "AS,CORE"}},
        {"options": {"PreemptType": "preempt/qos", "PreemptMode": "SUSPEND,GANG"}},
        {"options": {"PreemptType": "preempt/partition_prio", "PreemptMode": "requeue"}},
        {"options": {"PreemptMode": "GANG,OFF,GANG"}},
        {"options": {"FirstJobId": "100", "MaxJobId": "100"}},
        {"options": {"FirstJobId": "67043328"}},
        {"options": {"JobContainerType": "job_container/tmpfs", "PrologFlags": "contain"}},
        {"options": {"JobContainerType": "job_container/tmpfs", "PrologFlags": "X11,Alloc"}},
        {"options": {"PrologFlags": "NoHold,Alloc,DeferBatch,Serial"}},
        {"options": {"JobAcctGatherParams": "UsePss,DisableGPUAcct", "Licenses": "foo:3,bar"}},
        {"options": {"PriorityMaxAge": "24855-03:13:08", "PriorityCalcPeriod": "35791393", "GroupUpdateForce": 0}},
        {"partitions": [{"name": "p", "max_time": "35791393", "options": {"PreemptMode": "SUSPEND"}}]},
    ],
)
def test_values_slurmctld_accepts_pass(slurm: dict[str, object]) -> None:
    spec_with(slurm=slurm)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90", 5400),
        ("1:30", 90),
        ("1:00:00", 3600),
        ("2-12", 216000),
        ("2-12:30", 217800),
        ("1-00:00:01", 86401),
        ("INFINITE", None),
        ("2 days", None),
    ],
)
def test_time_seconds(value: str, seconds: int | None) -> None:
    assert time_seconds(value) == seconds
    assert is_time(value) is (value != "2 days")
    assert not is_time("24855-03:13:09") and is_time("24855-03:13:08") and time_seconds("24855-03:13:08") == 2**31 - 60


def test_configless_slurmd_can_start_under_debians_unit() -> None:
    """Debian's slurmd.service refuses to start without /etc/slurm/slurm.conf, which a configless node never
    has; the slurmd step resets that condition with a drop-in (found by the engine-driven VM tier, where
    systemd silently skipped the start)."""
    unit = Path("/lib/systemd/system/slurmd.service")
    assert unit.is_file(), "Debian's slurmd package is missing (packages.apt; make deps installs it)"
    assert "ConditionPathExists=/etc/slurm/slurm.conf" in unit.read_text().splitlines()
    spec = loaded("dev").spec
    nodes = plan_nodes(spec)
    step = next(s for n in slurm_plan(spec, nodes) for s in n.steps if s.name == "slurmd")
    script = step.script.content
    dropin = re.search(r'wanted_unit="(.*?)"\n', script, re.DOTALL)
    assert dropin is not None and "/etc/systemd/system/slurmd.service.d/" in script
    lines = dropin.group(1).splitlines()
    assert lines[1:] == ["[Unit]", "ConditionPathExists="], lines
    assert script.index("systemctl daemon-reload") < script.index("svc_start slurmd")


@pytest.mark.parametrize("drain", ["drain_and_wait", "drain_for_mig"])
def test_a_drain_stops_when_slurmctld_never_answers(drain: str, tmp_path: Path) -> None:
    """When slurm_ask gives up on squeue (slurmctld silent for CTLD_WAIT_S), the drain must fail, not take
    the empty answer for "no jobs left" and let the VM go."""
    import subprocess

    from render.remote import SLURM_INCLUDES, render_script

    script = render_script("membership", {"DRAIN_TIMEOUT": 60}, SLURM_INCLUDES).content
    script = script.replace(
        "ACTION=${1:?",
        'node_known() { return 0; }\nslurm_ask() {\n  [ "$1" != squeue ] || die "slurmctld gave up"\n}\nACTION=${1:?',
        1,
    )
    action = "leave" if drain == "drain_and_wait" else "mig"
    if action == "mig":
        script = script.replace(
            '  leave) drain_and_wait "$NODE" ;;', '  leave) drain_and_wait "$NODE" ;;\n  mig) drain_for_mig "$NODE" ;;'
        )
    path = tmp_path / "membership.sh"
    path.write_text(script)
    result = subprocess.run(["bash", str(path), action, "n1"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "slurmctld gave up" in result.stderr, result.stderr
    assert "drained" not in result.stderr, result.stderr
