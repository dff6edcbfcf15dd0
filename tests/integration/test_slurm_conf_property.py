"""Issue 8: every stack the checks accept renders a slurm.conf that a real slurmctld accepts.

Hypothesis generates stacks on the dev preset with `slurm.options` and `slurm.partitions` drawn from
known, owned and unknown keys in several spellings, and values that are valid, invalid or injection
attempts. Each goes through both tiers (build_spec). A refused stack must carry findings; an accepted one
is rendered and booted in a real slurmctld (harness/slurmctld_check.py), which must come up, and must not
see a key twice. A stack the checks accept and slurmctld refuses is a defect in the checks.

Valid values are drawn more often than chance would give them, from each key's own Rule, so that enough
stacks get past the checks to boot slurmctld; nothing slurmctld might refuse is left out.

CI runs a fixed, derandomized set of examples. For a longer, random search:
    HYPERSCALER_PROPERTY_EXAMPLES=3000 .venv/bin/python -m pytest -q tests/integration/test_slurm_conf_property.py
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from config import ConfigError, StackInputs, build_spec
from config.models import ClusterSpec
from config.slurm_facts import (
    MAX_JOB_ID,
    OPTION_NAMES,
    OPTION_RULES,
    OWNED_KEYS,
    OWNED_PARTITION_KEYS,
    PARTITION_OPTION_NAMES,
    PARTITION_OPTION_RULES,
    Rule,
)
from config.topology import plan_nodes
from render.slurm import render_cgroup_conf, render_gres_conf, render_slurm_conf
from tests.integration.harness.slurmctld_check import Result, check_slurm_conf

pytestmark = pytest.mark.integration

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR test"
LOCAL_EXAMPLES = int(os.environ.get("HYPERSCALER_PROPERTY_EXAMPLES", "0") or 0)
PROFILE = settings(
    max_examples=LOCAL_EXAMPLES or 300,
    derandomize=not LOCAL_EXAMPLES,  # CI: the same examples every run; locally: a fresh random search
    database=None if not LOCAL_EXAMPLES else settings().database,  # locally, failures are replayed first
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    print_blob=True,
)


def stack(**slurm: Any) -> dict[str, Any]:
    return {"preset": "dev", "name": "dev", "ssh": {"public_keys": [KEY]}, "slurm": slurm}


def build(raw: dict[str, Any]) -> ClusterSpec:
    return build_spec(StackInputs("Pulumi.property.yaml", raw)).spec


def boot(spec: ClusterSpec) -> tuple[str, Result]:
    """The files a node gets, as test_slurm_real's committed-stack check boots them. The stack's own
    cgroup.conf (cgroup/v2) is fine on this cgroup v1 host: slurmctld does not load the cgroup plugin."""
    nodes = plan_nodes(spec)
    conf = render_slurm_conf(spec, nodes)
    extra = {"gres.conf": render_gres_conf(spec, nodes), "cgroup.conf": render_cgroup_conf(spec.slurm.cgroup_plugin)}
    return conf, check_slurm_conf(conf, extra)


# --- values ------------------------------------------------------------------------------------------

NUMBERS = [
    "0", "1", "2", "30", "60", "300", "65534", "65535", "65536", "4294967294", "4294967295", "999999999",
    str(MAX_JOB_ID), str(MAX_JOB_ID + 1), "35791393", "35791394", "-1", "1.5", "01", "1e3", "0x10", "+5",
]  # fmt: skip
WORDS = [
    "yes", "no", "YES", "NO", "Yes", "true", "on", "none", "NONE", "all", "ALL", "foo", "Foo", "UNLIMITED",
    "INFINITE", "unlimited", "off", "GANG", "SUSPEND", "cpu", "gpu", "root", "slurm", "café", "x,", ",x", "=", ":",
]  # fmt: skip
PATHS = ["/bin/true", "/nonexistent/x", "/", "//x", "relative/x", "./x", "/etc/slurm/x.sh", "~/x", "/tmp/$USER"]
TIMES = [
    "90", "1:30", "1:00:00", "2-00:00:00", "2-12", "2-12:30", "INFINITE", "unlimited", "Infinite", "1:99",
    "99:99:99", "-1", "2 days", "1-2-3", "1:2:3:4", "1-", "-5", ":30", "1::2", "0", "00:00", "35791393",
    "35791394", "24855-03:13:08", "24855-03:13:09", "999999-23:59:59", "1-99:99:99", "1.5", "1h",
]  # fmt: skip
HOSTS = ["localhost", "controller", "a.b.c", "-bad", "10.0.0.1", "::1", "host_1", "example.org:25"]
LISTS = [
    "bf_interval=60", "bf_interval=60,bf_continue", "a=b,c=d", "gpu:1", "cpu=1,mem=2", "a,b", "a:b", "a:1,b:2",
    "foo:3", "foo:-1", "60001-63000", "63000-60001", "1-65535", "0-0", "task=30", "enable_configless",
    "idle_on_node_suspend", "cpu", "CPU=1.0,Mem=0.25G", "AS,CORE", "cpu,as", "FORCE:4", "yes:0", "YES:99999",
]  # fmt: skip
BOGUS_PLUGINS = ["sched/bogus", "preempt/BOGUS", "topology/tree", "jobcomp/mysql", "priority/", "/none", "none"]
INJECTIONS = [
    "bf_interval=60 SlurmUser=root",
    "1\nSlurmUser=root",
    "1\rSlurmUser=root",
    "x #comment",
    "x#comment",
    '"quoted"',
    "'quoted'",
    "x\ty",
    "x\x00y",
    "x\x1b[0m",
    "x\\",
    "x\\\nSlurmUser=root",
    "x\u2028SlurmUser=root",
    "x\x85y",
    "x\xa0y",
    "\\#",
    "",
    " ",
]
EVERYTHING = [*NUMBERS, *WORDS, *PATHS, *TIMES, *HOSTS, *LISTS, *BOGUS_PLUGINS, *INJECTIONS]
SEPARATORS = [" ", "\n", "\t", "\r\n", "#", " # ", "\\\n"]
PAIRS = ["SlurmUser=root", "AuthType=auth/none", "PartitionName=evil Nodes=ALL", "Nodes=ALL", "Include /etc/x"]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, picked in proportion to its weight."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(lambda s: s)


def case_variants(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, word.lower(), word.upper()])


def chosen(rule: Rule) -> st.SearchStrategy[str]:
    """Words of a `_words` rule: one, or a comma list (repeats allowed), in any case; plugins also bogus."""
    words = st.sampled_from(rule.choices)
    joined = st.lists(words, min_size=1, max_size=4 if rule.lists else 1).map(",".join)
    bogus = words.map(lambda w: w.split("/")[0] + "/bogus" if "/" in w else w + "x")
    return st.one_of(joined, joined.flatmap(case_variants), bogus)


def valid_pool(rule: Rule) -> list[str]:
    """Every sample value this rule accepts: the likely-accepted values to draw most often."""
    return [v for v in dict.fromkeys(EVERYTHING) if rule.accepts(v)]


def values_for(rule: Rule | None) -> st.SearchStrategy[Any]:
    anything: st.SearchStrategy[Any] = weighted(
        (4, st.sampled_from(EVERYTHING)),
        (1, st.integers(0, 10**6)),  # a YAML number
        (1, st.text(min_size=1, max_size=6)),
    )
    injection = st.tuples(
        st.sampled_from(["1", "x", *(rule.choices[:1] if rule else ())]),
        st.sampled_from(SEPARATORS),
        st.sampled_from(PAIRS),
    ).map("".join)
    choices: list[tuple[int, st.SearchStrategy[Any]]] = [(1, anything), (1, injection)]
    if rule is not None:
        pool = valid_pool(rule)
        if pool:
            choices.append((4, st.sampled_from(pool)))
        if rule.choices:
            choices.append((6, chosen(rule)))
    return weighted(*choices)


def keys(names: dict[str, str], owned: frozenset[str], unknown: list[str]) -> st.SearchStrategy[str]:
    known = st.sampled_from(sorted(names.values()))
    return weighted(
        (12, known),
        (2, known.flatmap(case_variants)),
        (1, st.sampled_from(sorted(owned)).flatmap(lambda k: case_variants(names.get(k, k)))),
        (1, st.sampled_from(unknown)),
    )


OPTION_KEYS = keys(
    OPTION_NAMES,
    OWNED_KEYS,
    ["FooBar", "SlurmSchedLogFile", "SchedulerParams", "CgroupPlugin", "Nodes", "MaxTime", "9Lives", "Key_X", ""],
)
PARTITION_KEYS = keys(
    PARTITION_OPTION_NAMES,
    OWNED_PARTITION_KEYS,
    ["FooBar", "Shared", "SelectTypeParameters", "TRESBillingWeights", "PowerDownOnIdle", "KillWait", "a b"],
)


# Keys slurm.conf(5) relates to each other: drawn together now and then, since two random keys of ~180
# rarely meet.
RELATED = (
    ("PreemptType", "PreemptMode"),
    ("FirstJobId", "MaxJobId"),
    ("JobContainerType", "PrologFlags"),
    ("DefMemPerCPU", "DefMemPerNode"),
    ("MaxMemPerCPU", "MaxMemPerNode"),
    ("PriorityDecayHalfLife", "PriorityUsageResetPeriod"),
    ("PriorityType", "PriorityWeightAge"),
    ("HealthCheckInterval", "HealthCheckProgram"),
    ("JobCompType", "JobCompLoc"),
    ("MaxJobCount", "MaxArraySize"),
    ("SuspendTime", "SuspendProgram"),
    ("MessageTimeout", "UnkillableStepTimeout"),
    ("AccountingStorageEnforce", "TrackWCKey"),
)


def options(
    key_strategy: st.SearchStrategy[str], rules: dict[str, Rule], most: int, related: tuple[tuple[str, str], ...] = ()
) -> st.SearchStrategy[Any]:
    def pair(key: str) -> st.SearchStrategy[tuple[str, Any]]:
        return st.tuples(st.just(key), values_for(rules.get(key.lower())))

    drawn = st.lists(key_strategy.flatmap(pair), max_size=most)
    if related:
        group = st.sampled_from(related).flatmap(lambda keys: st.tuples(*map(pair, keys)).map(list))
        drawn = weighted((3, drawn), (1, st.tuples(drawn, group).map(lambda t: t[0] + t[1])))
    return drawn.map(dict)


NAMES = ["cpu", "batch", "debug", "long-1", "short", "interactive", "express", "big", "q1", "p" * 63]
BAD_NAMES = ["default", "DEFAULT", "Default", "a b", "-p", "p" * 64, ""]
PARTITION = st.fixed_dictionaries(
    {"name": weighted((6, st.sampled_from(NAMES)), (1, st.sampled_from(BAD_NAMES)))},
    optional={
        "groups": st.lists(weighted((8, st.just("cpu")), (1, st.sampled_from(["gpu", "CPU"]))), max_size=2),
        "default": st.booleans(),
        "max_time": st.one_of(values_for(PARTITION_OPTION_RULES["defaulttime"]), st.integers(0, 10**8)),
        "options": options(PARTITION_KEYS, PARTITION_OPTION_RULES, 3),
    },
)
SLURM = st.fixed_dictionaries(
    {},
    optional={
        "options": options(OPTION_KEYS, OPTION_RULES, 4, RELATED),
        "partitions": st.lists(PARTITION, max_size=3),
        "accounting": st.fixed_dictionaries({"enabled": st.booleans()}),
    },
)


# --- the property ------------------------------------------------------------------------------------


@PROFILE
@given(SLURM)
@example({"options": {"SchedulerParameters": "bf_interval=60 SlurmUser=root"}})
@example({"partitions": [{"name": "batch", "options": {"AllowGroups": "x\nPartitionName=evil Nodes=ALL"}}]})
@example({"partitions": [{"name": "batch", "options": {"Nodes": "ALL"}}]})
@example({"partitions": [{"name": "DEFAULT"}]})
@example({"partitions": [{"name": "a", "options": {"AllowGroups": "x\\"}}, {"name": "b", "default": True}]})
@example({"options": {"PreemptType": "preempt/qos", "PreemptMode": "REQUEUE", "KillWait": "65535"}})
@example({"options": {"PreemptType": "preempt/qos"}})
@example({"options": {"FirstJobId": "100", "MaxJobId": "100", "SlurmctldDebug": "quiet"}})
@example({"options": {"JobContainerType": "job_container/tmpfs", "PrologFlags": "Alloc,Contain"}})
@example({"options": {"JobCompType": "jobcomp/filetxt", "PropagateResourceLimits": "ALL"}})
@example({"partitions": [{"name": "cpu", "options": {"PreemptMode": "OFF,OFF"}}]})
@example({"options": {"JobContainerType": "job_container/none", "PrologFlags": "Contain,NoHold"}})
@example({"options": {"JobContainerType": "job_container/tmpfs", "PrologFlags": "X11"}})
@example({"partitions": [{"name": "batch", "default": True, "max_time": "24855-03:13:08"}]})
def test_accepted_stacks_boot_a_real_slurmctld(slurm: dict[str, Any]) -> None:
    try:
        spec = build(stack(**slurm))
    except ConfigError as exc:
        assert [f for f in exc.findings if f.is_error], exc.report()
        event("refused by the checks")
        return
    event("accepted: booted slurmctld")
    conf, result = boot(spec)
    twice = [line for line in result.log.splitlines() if "specified more than once" in line]
    assert result.ok and not twice, (
        f"the checks accepted slurm: {slurm!r}\nbut slurmctld said: {result.reason}\n"
        f"{chr(10).join(twice)}\n--- log (tail) ---\n{result.log[-3000:]}\n--- slurm.conf ---\n{conf}"
    )


# --- injection that must be refused, whatever the generator draws -------------------------------------


@pytest.mark.parametrize(
    ("slurm", "path", "message"),
    [
        (
            {"options": {"SchedulerParameters": "bf_interval=60 SlurmUser=root"}},
            "slurm.options.SchedulerParameters",
            "cannot go into slurm.conf",
        ),
        (
            {"partitions": [{"name": "batch", "options": {"AllowGroups": "x\nPartitionName=evil Nodes=ALL"}}]},
            "slurm.partitions[0].options.AllowGroups",
            "cannot go into slurm.conf",
        ),
        (
            {"partitions": [{"name": "a", "options": {"AllowGroups": "x\\"}}, {"name": "b"}]},
            "slurm.partitions[0].options.AllowGroups",
            "cannot go into slurm.conf",
        ),
        (
            {"partitions": [{"name": "batch", "options": {"Nodes": "ALL"}}]},
            "slurm.partitions[0].options.Nodes",
            "Nodes cannot be set here",
        ),
        (
            {"partitions": [{"name": "batch", "options": {"nodes": "ALL"}}]},
            "slurm.partitions[0].options.nodes",
            "nodes cannot be set here",
        ),
        ({"partitions": [{"name": "DEFAULT"}]}, "slurm.partitions[0].name", "'DEFAULT'"),
        ({"partitions": [{"name": "default"}]}, "slurm.partitions[0].name", "'default' is reserved"),
        (
            {"partitions": [{"name": "batch", "options": {"MaxNodes": "1", "maxnodes": "2"}}]},
            "slurm.partitions[0].options.maxnodes",
            "maxnodes is also given as MaxNodes",
        ),
    ],
    ids=[
        "extra-pair",
        "newline-in-partition",
        "backslash-joins-lines",
        "nodes",
        "nodes-lower",
        "DEFAULT",
        "default",
        "key-twice",
    ],
)
def test_injection_is_refused(slurm: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(stack(**slurm))
    found = [f for f in info.value.findings if f.is_error and f.path == path]
    assert found and any(message in f.message for f in found), info.value.report()
