"""Facts about slurm.conf that the models, checks, renderers and scripts all read: one place for each.

Key lists come from slurm.conf(5) of SLURM 22.05.8 as Debian 12 ships it (slurm-client
22.05.8-4+deb12u3, /usr/share/man/man5/slurm.conf.5.gz): the top-level entries of its PARAMETERS and
PARTITION CONFIGURATION sections. Value types were found by asking a real 22.05.8 slurmctld
(tests/integration/harness/slurmctld_check.py) to start with each key set to a word and to a number, and
narrowed where tests/integration/test_slurm_conf_property.py found a value the rules let through and
slurmctld refused (each such rule quotes what slurmctld said). For another SLURM release, run that test
with HYPERSCALER_PROPERTY_EXAMPLES set high (docs/slurm.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable

SLURM_RELEASE = "22.05.8"


def _lower(*keys: str) -> frozenset[str]:
    return frozenset(k.lower() for k in keys)


# slurm.conf keys the program derives from the rest of the spec. Overriding them would let the file
# disagree with the VMs, networks or accounting setup, so `slurm.options` refuses them.
OWNED_KEYS = _lower(
    "ClusterName",
    "SlurmctldHost",
    "ControlMachine",
    "ControlAddr",
    "BackupController",
    "BackupAddr",
    "SlurmUser",
    "SlurmdUser",
    "AuthType",
    "AuthAltTypes",
    "AuthAltParameters",
    "AuthInfo",
    "CredType",
    "StateSaveLocation",
    "SlurmdSpoolDir",
    "SlurmctldPidFile",
    "SlurmdPidFile",
    "SlurmctldLogFile",
    "SlurmdLogFile",
    "SlurmctldPort",
    "SlurmdPort",
    "SelectType",
    "SelectTypeParameters",
    "ProctrackType",
    "TaskPlugin",
    "GresTypes",
    "AccountingStorageType",
    "AccountingStorageHost",
    "AccountingStoragePort",
    "AccountingStorageTRES",
    "AccountingStorageUser",
    "AccountingStoragePass",
    "JobAcctGatherType",
    "NodeName",
    "PartitionName",
    "Include",
    "DownNodes",
    "NodeSet",
    "FrontendName",
    "PlugStackConfig",
    "PluginDir",
)

# Keys whose change needs the daemons restarted rather than `scontrol reconfigure` (slurm.conf(5), and
# the "requires restart" notes of each parameter in 22.05).
RESTART_KEYS = _lower(
    "AuthType",
    "CredType",
    "SlurmctldHost",
    "SlurmctldPort",
    "SlurmdPort",
    "SelectType",
    "SelectTypeParameters",
    "ProctrackType",
    "TaskPlugin",
    "GresTypes",
    "AccountingStorageType",
    "JobAcctGatherType",
    "SwitchType",
    "MpiDefault",
    "PlugStackConfig",
    "SlurmUser",
    "StateSaveLocation",
    "SlurmdSpoolDir",
    "LaunchType",
)

# The partition keys the program writes itself from `slurm.partitions[]`: a second `Nodes=` in options
# would silently widen a partition.
OWNED_PARTITION_KEYS = _lower("PartitionName", "Nodes", "Default", "MaxTime", "State")
# SLURM reads `PartitionName=DEFAULT` (any case) as the defaults for later partition lines, not a partition.
RESERVED_PARTITION_NAMES = frozenset({"default"})

# Time values (MaxTime, DefaultTime): "minutes", "minutes:seconds", "hours:minutes:seconds", "days-hours",
# "days-hours:minutes", "days-hours:minutes:seconds", or INFINITE/UNLIMITED (slurm.conf(5), MaxTime).
TIME_RE = re.compile(
    r"^(?:\d{1,9}|\d{1,9}:\d{1,2}|\d{1,9}:\d{1,2}:\d{1,2}|\d{1,6}-\d{1,2}(?::\d{1,2}(?::\d{1,2})?)?|INFINITE|UNLIMITED)$",
    re.IGNORECASE,
)
TIME_FORMATS = "minutes, minutes:seconds, hours:minutes:seconds, days-hours[:minutes[:seconds]], or INFINITE"
# slurmctld turns a time into minutes as (seconds + 59) / 60 in a C int: one second more than this
# overflows, and slurmctld stops with `Bad value "35791394" for MaxTime` (or wraps a bigger value round
# to a wrong but positive limit).
MAX_TIME_SECONDS = 2**31 - 1 - 59
MAX_TIME = "24855-03:13:08"  # MAX_TIME_SECONDS, for messages


def time_seconds(value: str) -> int | None:
    """Seconds of a SLURM time as TIME_RE reads it; None for INFINITE/UNLIMITED or not a time."""
    if not TIME_RE.match(value) or value.upper() in ("INFINITE", "UNLIMITED"):
        return None
    days, _, clock = value.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        hours, minutes, seconds = [*parts, 0, 0][:3]
        return int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    if len(parts) == 3:  # hours:minutes:seconds
        return parts[0] * 3600 + parts[1] * 60 + parts[2]
    return parts[0] * 60 + (parts[1] if len(parts) == 2 else 0)  # minutes[:seconds]


def is_time(value: str) -> bool:
    seconds = time_seconds(value)
    return bool(TIME_RE.match(value)) and (seconds is None or seconds <= MAX_TIME_SECONDS)


# A value slurm.conf reads as one token: no whitespace (which starts the next Key=Value pair on the
# same line), no comment sign, no quotes, no control characters (a newline starts a new line), and no
# backslash: at the end of a line it joins the next line to it (a partition option `AllowGroups=x\`
# swallowed the next PartitionName line, and slurmctld started with one partition fewer).
VALUE_RE = re.compile(r"^[^\s#\"'\\\x00-\x1f\x7f]+$")
KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


class Rule:
    """What a slurm.conf value must look like: a pattern, an optional further test, and words for the
    error message. `choices` and `lists` describe a `_words` rule; the property tests draw values from them."""

    def __init__(
        self,
        describe: str,
        pattern: str,
        choices: tuple[str, ...] = (),
        lists: bool = False,
        *,
        case_sensitive: bool = False,
        test: Callable[[str], bool] | None = None,
    ) -> None:
        self.describe = describe
        self.pattern = re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)
        self.choices = choices
        self.lists = lists
        self.test = test

    def accepts(self, value: str) -> bool:
        return (
            bool(VALUE_RE.match(value)) and bool(self.pattern.match(value)) and (self.test is None or self.test(value))
        )


def _words(
    *words: str,
    lists: bool = False,
    case_sensitive: bool = False,
    test: Callable[[str], bool] | None = None,
) -> Rule:
    one = "(?:" + "|".join(re.escape(w) for w in words) + ")"
    pattern = f"^{one}(?:,{one})*$" if lists else f"^{one}$"
    describe = ("a comma-separated list of " if lists else "one of ") + ", ".join(words)
    return Rule(describe, pattern, words, lists, case_sensitive=case_sensitive, test=test)


def _plugins(kind: str, *names: str, lists: bool = False) -> Rule:
    # Plugin names are file names: slurmctld finds sched/backfill but not SCHED/BACKFILL ("Couldn't find
    # the specified plugin name for SCHED/BACKFILL").
    return _words(*(f"{kind}/{n}" for n in names), lists=lists, case_sensitive=True)


def _number(low: int, high: int, *, unlimited: bool = False) -> Rule:
    """A whole number in [low, high]: SLURM stores many values in 16 bits and stops at a bigger one
    ("KillWait value (65536) is greater than 65535")."""
    pattern = r"^(?:\d{1,9}|UNLIMITED)$" if unlimited else r"^\d{1,9}$"
    describe = f"a whole number from {low} to {high}" + (" or UNLIMITED" if unlimited else "")
    return Rule(describe, pattern, test=lambda v: v.upper() == "UNLIMITED" or low <= int(v) <= high)


def _preempt_mode(value: str) -> bool:
    # One of OFF, CANCEL, REQUEUE, SUSPEND, once, plus GANG: "PreemptMode=OFF,SUSPEND invalid", and
    # `Bad value "OFF,OFF" for PreemptMode` (slurmctld counts the words, not the distinct ones).
    return sum(w.upper() != "GANG" for w in value.split(",")) <= 1


def _global_preempt_mode(value: str) -> bool:
    # "PreemptMode=SUSPEND requires GANG too" (the cluster-wide key only).
    words = {w.upper() for w in value.split(",")}
    return _preempt_mode(value) and ("SUSPEND" not in words or "GANG" in words)


def _prolog_flags(value: str) -> bool:
    # "fatal: PrologFlags invalid combination: NoHold cannot be combined with Contain and/or X11"
    words = set(value.lower().split(","))
    return "nohold" not in words or not words & {"contain", "x11"}


ANY = Rule("a single word (no spaces, quotes, backslashes or #)", r"^.+$")
NUMBER = Rule("a whole number", r"^\d{1,9}$")
POSITIVE = Rule("a whole number of at least 1", r"^[1-9]\d{0,8}$")
NUMBER_OR_UNLIMITED = Rule("a whole number or UNLIMITED", r"^(?:\d{1,9}|UNLIMITED)$")
NUMBER16 = _number(0, 65535)
POSITIVE16 = _number(1, 65535)
NUMBER16_OR_UNLIMITED = _number(0, 65535, unlimited=True)
YES_NO = _words("YES", "NO", "1", "0")
TIME = Rule(f"{TIME_FORMATS} (at most {MAX_TIME})", TIME_RE.pattern, test=is_time)
# Minutes, given as a time: slurmctld reads these keys as times, and 0 is fatal.
MINUTES = Rule(
    f"a whole number of minutes from 1 to {MAX_TIME_SECONDS // 60}",
    r"^[1-9]\d{0,8}$",
    test=lambda v: int(v) * 60 <= MAX_TIME_SECONDS,
)
# The job ids SLURM can hand out: "MaxJobId can not exceed MAX_JOB_ID, resetting value" above this.
MAX_JOB_ID = 0x03FF0000
PATH = Rule("an absolute path", r"^/\S*$")
DEBUG_LEVEL = _words("quiet", "fatal", "error", "info", "verbose", "debug", "debug2", "debug3", "debug4", "debug5")
HOSTS = Rule("a hostname or address", r"^[A-Za-z0-9][A-Za-z0-9.:-]*$")

_RLIMITS = _words(
    "AS", "CORE", "CPU", "DATA", "FSIZE", "MEMLOCK", "NOFILE", "NPROC", "RSS", "STACK", lists=True, case_sensitive=True
)

# Plugins Debian 12's slurm-wlm 22.05.8 installs in /usr/lib/x86_64-linux-gnu/slurm-wlm (the guests'
# package), limited to those that work without site hardware or services (no Cray, no KNL, no MySQL
# job completion database).
_GLOBAL: dict[str, Rule] = {
    "AccountingStorageEnforce": _words(
        "associations", "limits", "nojobs", "nosteps", "qos", "safe", "wckeys", "all", lists=True
    ),
    "AccountingStorageParameters": ANY,
    "AccountingStoreFlags": _words("job_comment", "job_env", "job_script", lists=True),
    # acct_gather_energy/gpu: "dlopen(...acct_gather_energy_gpu.so): undefined symbol: conf".
    "AcctGatherEnergyType": _plugins("acct_gather_energy", "none", "rapl"),
    "AcctGatherFilesystemType": _plugins("acct_gather_filesystem", "none", "lustre"),
    "AcctGatherInterconnectType": _plugins("acct_gather_interconnect", "none", "sysfs"),
    "AcctGatherNodeFreq": NUMBER16,
    "AcctGatherProfileType": _plugins("acct_gather_profile", "none"),
    "AllowSpecResourcesUsage": YES_NO,
    "BatchStartTimeout": NUMBER16,
    "BcastParameters": ANY,
    "CliFilterPlugins": _words("lua", "syslog", "user_defaults", lists=True, case_sensitive=True),
    "CommunicationParameters": ANY,
    "CompleteWait": NUMBER16,
    "CpuFreqDef": ANY,
    "CpuFreqGovernors": ANY,
    "DefCpuPerGPU": NUMBER,
    "DefMemPerCPU": NUMBER,
    "DefMemPerGPU": NUMBER,
    "DefMemPerNode": NUMBER,
    "DebugFlags": _words(
        "Accrue",
        "Agent",
        "Backfill",
        "BackfillMap",
        "BurstBuffer",
        "Cgroup",
        "CPU_Bind",
        "CpuFrequency",
        "Data",
        "Dependency",
        "Elasticsearch",
        "Energy",
        "ExtSensors",
        "Federation",
        "FrontEnd",
        "Gres",
        "Hetjob",
        "Gang",
        "JobAccountGather",
        "JobContainer",
        "License",
        "Network",
        "NetworkRaw",
        "NodeFeatures",
        "NO_CONF_HASH",
        "Power",
        "Priority",
        "Profile",
        "Protocol",
        "Reservation",
        "Route",
        "Script",
        "SelectType",
        "Steps",
        "Switch",
        "TraceJobs",
        "Triggers",
        "WorkQueue",
        lists=True,
    ),
    "DependencyParameters": ANY,
    "DisableRootJobs": YES_NO,
    "EioTimeout": NUMBER16,
    "EnforcePartLimits": _words("ALL", "ANY", "NO", "YES"),
    "Epilog": PATH,
    "EpilogMsgTime": NUMBER,
    "EpilogSlurmctld": PATH,
    "ExtSensorsFreq": NUMBER16,
    "FairShareDampeningFactor": POSITIVE16,
    "FirstJobId": _number(1, MAX_JOB_ID),  # and at most MaxJobId: config/checks.py
    "GetEnvTimeout": NUMBER16,
    "GpuFreqDef": ANY,
    "GroupUpdateForce": _words("0", "1"),  # "GroupUpdateForce value "yes" is not a valid number"
    "GroupUpdateTime": NUMBER16,
    "HealthCheckInterval": NUMBER16,
    "HealthCheckNodeState": _words("ALLOC", "ANY", "CYCLE", "IDLE", "MIXED", "NONDRAINED_IDLE", lists=True),
    "HealthCheckProgram": PATH,
    "InactiveLimit": NUMBER16,
    "InteractiveStepOptions": ANY,
    "JobAcctGatherFrequency": ANY,
    # Not OverMemoryKill: with the program's TaskPlugin=task/cgroup, "fatal: Jobs memory is being constrained
    # by both TaskPlugin cgroup and JobAcctGather plugin".
    "JobAcctGatherParams": _words(
        "NoShared",
        "UsePss",
        "DisableGPUAcct",
        lists=True,
        # "fatal: JobAcctGatherParams options UsePSS and NoShared are mutually exclusive."
        test=lambda v: not {"usepss", "noshared"} <= set(v.lower().split(",")),
    ),
    "JobCompHost": HOSTS,
    "JobCompLoc": PATH,
    "JobCompParams": ANY,
    "JobCompPort": NUMBER,
    "JobCompType": _plugins("jobcomp", "none", "filetxt", "script", "lua"),
    "JobCompUser": ANY,
    "JobContainerType": _plugins("job_container", "none", "tmpfs"),
    "JobFileAppend": _words("0", "1"),
    "JobRequeue": _words("0", "1"),
    # Not lua: it needs a job_submit.lua beside slurm.conf, which hyperscaler does not write ("job_submit/lua:
    # Unable to stat .../job_submit.lua").
    "JobSubmitPlugins": _words(
        "all_partitions",
        "defaults",
        "logging",
        "partition",
        "pbs",
        "require_timelimit",
        "throttle",
        lists=True,
        case_sensitive=True,
    ),
    "KillOnBadExit": _words("0", "1"),
    "KillWait": NUMBER16,
    "LaunchParameters": ANY,
    # name[:count], comma-separated: "fatal: Invalid configured licenses: 1:00:00".
    "Licenses": Rule(
        "a comma-separated list of name[:count]",
        r"^[A-Za-z0-9_.@-]+(?::\d{1,9})?(?:,[A-Za-z0-9_.@-]+(?::\d{1,9})?)*$",
    ),
    "LogTimeFormat": _words(
        "iso8601", "iso8601_ms", "rfc5424", "rfc5424_ms", "clock", "short", "thread_id", lists=True
    ),
    "MailDomain": HOSTS,
    "MailProg": PATH,
    "MaxArraySize": NUMBER,
    "MaxJobCount": POSITIVE,
    "MaxJobId": _number(1, MAX_JOB_ID),
    "MaxMemPerCPU": NUMBER,
    "MaxMemPerNode": NUMBER,
    "MaxStepCount": POSITIVE,
    "MaxTasksPerNode": NUMBER16,
    "MessageTimeout": NUMBER16,
    "MinJobAge": NUMBER,
    "MpiDefault": _words("none", "pmi2", "pmix", "pmix_v4"),
    "MpiParams": ANY,
    "OverTimeLimit": NUMBER16_OR_UNLIMITED,
    "PreemptExemptTime": TIME,
    # And it must suit PreemptType: config/checks.py.
    "PreemptMode": _words("OFF", "CANCEL", "GANG", "REQUEUE", "SUSPEND", lists=True, test=_global_preempt_mode),
    "PreemptType": _plugins("preempt", "none", "partition_prio", "qos"),
    "PriorityCalcPeriod": MINUTES,
    "PriorityDecayHalfLife": MINUTES,
    "PriorityFavorSmall": YES_NO,
    "PriorityFlags": ANY,
    "PriorityMaxAge": TIME,
    "PriorityType": _plugins("priority", "basic", "multifactor"),
    "PriorityUsageResetPeriod": _words("NONE", "NOW", "DAILY", "WEEKLY", "MONTHLY", "QUARTERLY", "YEARLY"),
    "PriorityWeightAge": NUMBER,
    "PriorityWeightAssoc": NUMBER,
    "PriorityWeightFairshare": NUMBER,
    "PriorityWeightJobSize": NUMBER,
    "PriorityWeightPartition": NUMBER,
    "PriorityWeightQOS": NUMBER,
    "PriorityWeightTRES": ANY,
    "PrivateData": _words(
        "accounts", "cloud", "events", "jobs", "nodes", "partitions", "reservations", "usage", "users", lists=True
    ),
    "Prolog": PATH,
    "PrologEpilogTimeout": NUMBER16,
    # ForceRequeueOnFail and RunInJob came after 22.05: "fatal: PrologFlags invalid: RunInJob".
    "PrologFlags": _words(
        "Alloc",
        "Contain",
        "DeferBatch",
        "NoHold",
        "Serial",
        "X11",
        lists=True,
        test=_prolog_flags,
    ),
    "PrologSlurmctld": PATH,
    "PropagatePrioProcess": _words("0", "1", "2"),
    # Upper case only ("Bad rlimit name: cpu"), and ALL or NONE stand alone ("Bad rlimit name: ALL" in ALL,STACK).
    "PropagateResourceLimits": Rule(
        f"ALL, NONE, or {_RLIMITS.describe}",
        rf"^(?:ALL|NONE|{_RLIMITS.pattern.pattern[1:-1]})$",
        ("ALL", "NONE", *_RLIMITS.choices),
        lists=True,
        case_sensitive=True,
    ),
    "PropagateResourceLimitsExcept": _RLIMITS,
    "RebootProgram": PATH,
    "ReconfigFlags": _words("KeepPartInfo", "KeepPartState", "KeepPowerSaveSettings", lists=True),
    "RequeueExit": ANY,
    "RequeueExitHold": ANY,
    "ResumeFailProgram": PATH,
    "ResumeProgram": PATH,
    "ResumeRate": NUMBER16,
    "ResumeTimeout": NUMBER16,
    "ResvEpilog": PATH,
    "ResvOverRun": NUMBER16_OR_UNLIMITED,
    "ResvProlog": PATH,
    "ReturnToService": _words("0", "1", "2"),
    "SchedulerParameters": ANY,
    "SchedulerTimeSlice": NUMBER16,
    "SchedulerType": _plugins("sched", "backfill", "builtin"),
    "ScronParameters": ANY,
    "SlurmctldDebug": DEBUG_LEVEL,
    "SlurmctldParameters": ANY,
    "SlurmctldSyslogDebug": DEBUG_LEVEL,
    "SlurmctldTimeout": NUMBER16,
    "SlurmdDebug": DEBUG_LEVEL,
    "SlurmdParameters": ANY,
    "SlurmdSyslogDebug": DEBUG_LEVEL,
    "SlurmdTimeout": NUMBER16,
    "SrunEpilog": PATH,
    "SrunPortRange": Rule("a port range such as 60001-63000", r"^\d{1,5}-\d{1,5}$"),
    "SrunProlog": PATH,
    "SuspendExcNodes": ANY,
    "SuspendExcParts": ANY,
    "SuspendProgram": PATH,
    "SuspendRate": NUMBER16,
    "SuspendTime": NUMBER,
    "SuspendTimeout": NUMBER16,
    "TaskEpilog": PATH,
    "TaskProlog": PATH,
    "TCPTimeout": NUMBER16,
    "TmpFS": PATH,
    "TopologyParam": ANY,
    # tree and hypercube read a topology.conf hyperscaler does not write (slurmctld retries its stat for 60 s);
    # 3d_torus: "fatal: current logic only supports 3-dimensions".
    "TopologyPlugin": _plugins("topology", "none"),
    "TrackWCKey": YES_NO,
    "TreeWidth": POSITIVE16,
    "UnkillableStepProgram": PATH,
    "UnkillableStepTimeout": NUMBER16,
    "UsePAM": _words("0", "1"),
    "VSizeFactor": NUMBER16,
    "WaitTime": NUMBER16,
    "X11Parameters": ANY,
}
# slurm.conf keys that `slurm.options` may set, with the rule each value follows (keys lower-cased).
OPTION_RULES: dict[str, Rule] = {k.lower(): v for k, v in _GLOBAL.items()}
OPTION_NAMES: dict[str, str] = {k.lower(): k for k in _GLOBAL}

_PARTITION: dict[str, Rule] = {
    "AllocNodes": ANY,
    "AllowAccounts": ANY,
    "AllowGroups": ANY,
    "AllowQos": ANY,
    "Alternate": ANY,
    "CpuBind": _words("none", "socket", "ldom", "core", "thread", "board"),
    "DefCpuPerGPU": NUMBER_OR_UNLIMITED,
    "DefMemPerCPU": NUMBER_OR_UNLIMITED,
    "DefMemPerGPU": NUMBER_OR_UNLIMITED,
    "DefMemPerNode": NUMBER_OR_UNLIMITED,
    "DefaultTime": TIME,
    "DenyAccounts": ANY,
    "DenyQos": ANY,
    "DisableRootJobs": YES_NO,
    "ExclusiveUser": YES_NO,
    "GraceTime": NUMBER,
    "Hidden": YES_NO,
    "LLN": YES_NO,
    "MaxCPUsPerNode": NUMBER_OR_UNLIMITED,
    "MaxMemPerCPU": NUMBER_OR_UNLIMITED,
    "MaxMemPerNode": NUMBER_OR_UNLIMITED,
    "MaxNodes": NUMBER_OR_UNLIMITED,
    "MinNodes": NUMBER,
    "OverSubscribe": Rule(
        "EXCLUSIVE, NO, YES[:count] or FORCE[:count]", r"^(?:EXCLUSIVE|NO|(?:YES|FORCE)(?::\d{1,4})?)$"
    ),
    "OverTimeLimit": NUMBER_OR_UNLIMITED,
    "PreemptMode": _words("OFF", "CANCEL", "GANG", "REQUEUE", "SUSPEND", lists=True, test=_preempt_mode),
    "PriorityJobFactor": NUMBER16,
    "PriorityTier": NUMBER16,
    "QOS": ANY,
    "ReqResv": YES_NO,
    "ResumeTimeout": NUMBER16,
    "RootOnly": YES_NO,
    "SuspendTime": NUMBER,
    "SuspendTimeout": NUMBER16,
}
PARTITION_OPTION_RULES: dict[str, Rule] = {k.lower(): v for k, v in _PARTITION.items()}
PARTITION_OPTION_NAMES: dict[str, str] = {k.lower(): k for k in _PARTITION}
