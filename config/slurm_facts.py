"""Facts about slurm.conf that the models, checks, renderers and scripts all read: one place for each.

Key lists come from slurm.conf(5) of SLURM 22.05.8 as Debian 12 ships it (slurm-client
22.05.8-4+deb12u3, /usr/share/man/man5/slurm.conf.5.gz): the top-level entries of its PARAMETERS and
PARTITION CONFIGURATION sections. Value types were found by asking a real 22.05.8 slurmctld
(tests/integration/harness/slurmctld_check.py) to start with each key set to a word and to a number;
docs/slurm.md says how to refresh them for another SLURM release.
"""

from __future__ import annotations

import re

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

# A value slurm.conf reads as one token: no whitespace (which starts the next Key=Value pair on the
# same line), no comment sign, no quotes, no control characters (a newline starts a new line).
VALUE_RE = re.compile(r"^[^\s#\"'\x00-\x1f\x7f]+$")
KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


class Rule:
    """What a slurm.conf value must look like: a pattern and words for the error message."""

    def __init__(self, describe: str, pattern: str) -> None:
        self.describe = describe
        self.pattern = re.compile(pattern, re.IGNORECASE)

    def accepts(self, value: str) -> bool:
        return bool(VALUE_RE.match(value)) and bool(self.pattern.match(value))


def _words(*words: str, lists: bool = False) -> Rule:
    one = "(?:" + "|".join(re.escape(w) for w in words) + ")"
    pattern = f"^{one}(?:,{one})*$" if lists else f"^{one}$"
    return Rule(("a comma-separated list of " if lists else "one of ") + ", ".join(words), pattern)


def _plugins(kind: str, *names: str, lists: bool = False) -> Rule:
    return _words(*(f"{kind}/{n}" for n in names), lists=lists)


ANY = Rule("a single word (no spaces, quotes or #)", r"^.+$")
NUMBER = Rule("a whole number", r"^\d{1,9}$")
POSITIVE = Rule("a whole number of at least 1", r"^[1-9]\d{0,8}$")
NUMBER_OR_UNLIMITED = Rule("a whole number or UNLIMITED", r"^(?:\d{1,9}|UNLIMITED)$")
YES_NO = _words("YES", "NO", "1", "0")
TIME = Rule(TIME_FORMATS, TIME_RE.pattern)
PATH = Rule("an absolute path", r"^/\S*$")
DEBUG_LEVEL = _words("quiet", "fatal", "error", "info", "verbose", "debug", "debug2", "debug3", "debug4", "debug5")
HOSTS = Rule("a hostname or address", r"^[A-Za-z0-9][A-Za-z0-9.:-]*$")

# Plugins Debian 12's slurm-wlm 22.05.8 installs in /usr/lib/x86_64-linux-gnu/slurm-wlm (the guests'
# package), limited to those that work without site hardware or services (no Cray, no KNL, no MySQL
# job completion database).
_GLOBAL: dict[str, Rule] = {
    "AccountingStorageEnforce": _words(
        "associations", "limits", "nojobs", "nosteps", "qos", "safe", "wckeys", "all", lists=True
    ),
    "AccountingStorageParameters": ANY,
    "AccountingStoreFlags": _words("job_comment", "job_env", "job_script", lists=True),
    "AcctGatherEnergyType": _plugins("acct_gather_energy", "none", "rapl", "gpu"),
    "AcctGatherFilesystemType": _plugins("acct_gather_filesystem", "none", "lustre"),
    "AcctGatherInterconnectType": _plugins("acct_gather_interconnect", "none", "sysfs"),
    "AcctGatherNodeFreq": NUMBER,
    "AcctGatherProfileType": _plugins("acct_gather_profile", "none"),
    "AllowSpecResourcesUsage": YES_NO,
    "BatchStartTimeout": NUMBER,
    "BcastParameters": ANY,
    "CliFilterPlugins": _words("lua", "syslog", "user_defaults", lists=True),
    "CommunicationParameters": ANY,
    "CompleteWait": NUMBER,
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
    "EioTimeout": NUMBER,
    "EnforcePartLimits": _words("ALL", "ANY", "NO", "YES"),
    "Epilog": PATH,
    "EpilogMsgTime": NUMBER,
    "EpilogSlurmctld": PATH,
    "ExtSensorsFreq": NUMBER,
    "FairShareDampeningFactor": POSITIVE,
    "FirstJobId": POSITIVE,
    "GetEnvTimeout": NUMBER,
    "GpuFreqDef": ANY,
    "GroupUpdateForce": YES_NO,
    "GroupUpdateTime": NUMBER,
    "HealthCheckInterval": NUMBER,
    "HealthCheckNodeState": _words("ALLOC", "ANY", "CYCLE", "IDLE", "MIXED", "NONDRAINED_IDLE", lists=True),
    "HealthCheckProgram": PATH,
    "InactiveLimit": NUMBER,
    "InteractiveStepOptions": ANY,
    "JobAcctGatherFrequency": ANY,
    "JobAcctGatherParams": _words("NoShared", "UsePss", "OverMemoryKill", "DisableGPUAcct", lists=True),
    "JobCompHost": HOSTS,
    "JobCompLoc": PATH,
    "JobCompParams": ANY,
    "JobCompPort": NUMBER,
    "JobCompType": _plugins("jobcomp", "none", "filetxt", "script", "lua"),
    "JobCompUser": ANY,
    "JobContainerType": _plugins("job_container", "none", "tmpfs"),
    "JobFileAppend": _words("0", "1"),
    "JobRequeue": _words("0", "1"),
    "JobSubmitPlugins": _words(
        "all_partitions", "defaults", "logging", "lua", "partition", "pbs", "require_timelimit", "throttle", lists=True
    ),
    "KillOnBadExit": _words("0", "1"),
    "KillWait": NUMBER,
    "LaunchParameters": ANY,
    "Licenses": ANY,
    "LogTimeFormat": _words(
        "iso8601", "iso8601_ms", "rfc5424", "rfc5424_ms", "clock", "short", "thread_id", lists=True
    ),
    "MailDomain": HOSTS,
    "MailProg": PATH,
    "MaxArraySize": NUMBER,
    "MaxJobCount": POSITIVE,
    "MaxJobId": POSITIVE,
    "MaxMemPerCPU": NUMBER,
    "MaxMemPerNode": NUMBER,
    "MaxStepCount": POSITIVE,
    "MaxTasksPerNode": NUMBER,
    "MessageTimeout": NUMBER,
    "MinJobAge": NUMBER,
    "MpiDefault": _words("none", "pmi2", "pmix", "pmix_v4"),
    "MpiParams": ANY,
    "OverTimeLimit": NUMBER_OR_UNLIMITED,
    "PreemptExemptTime": TIME,
    "PreemptMode": _words("OFF", "CANCEL", "GANG", "REQUEUE", "SUSPEND", lists=True),
    "PreemptType": _plugins("preempt", "none", "partition_prio", "qos"),
    "PriorityCalcPeriod": POSITIVE,  # minutes; 0 is fatal
    "PriorityDecayHalfLife": POSITIVE,  # minutes; 0 is fatal
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
    "PrologEpilogTimeout": NUMBER,
    "PrologFlags": _words(
        "Alloc", "Contain", "DeferBatch", "ForceRequeueOnFail", "NoHold", "RunInJob", "Serial", "X11", lists=True
    ),
    "PrologSlurmctld": PATH,
    "PropagatePrioProcess": _words("0", "1", "2"),
    "PropagateResourceLimits": _words(
        "ALL", "NONE", "AS", "CORE", "CPU", "DATA", "FSIZE", "MEMLOCK", "NOFILE", "NPROC", "RSS", "STACK", lists=True
    ),
    "PropagateResourceLimitsExcept": _words(
        "AS", "CORE", "CPU", "DATA", "FSIZE", "MEMLOCK", "NOFILE", "NPROC", "RSS", "STACK", lists=True
    ),
    "RebootProgram": PATH,
    "ReconfigFlags": _words("KeepPartInfo", "KeepPartState", "KeepPowerSaveSettings", lists=True),
    "RequeueExit": ANY,
    "RequeueExitHold": ANY,
    "ResumeFailProgram": PATH,
    "ResumeProgram": PATH,
    "ResumeRate": NUMBER,
    "ResumeTimeout": NUMBER,
    "ResvEpilog": PATH,
    "ResvOverRun": NUMBER_OR_UNLIMITED,
    "ResvProlog": PATH,
    "ReturnToService": _words("0", "1", "2"),
    "SchedulerParameters": ANY,
    "SchedulerTimeSlice": NUMBER,
    "SchedulerType": _plugins("sched", "backfill", "builtin"),
    "ScronParameters": ANY,
    "SlurmctldDebug": DEBUG_LEVEL,
    "SlurmctldParameters": ANY,
    "SlurmctldSyslogDebug": DEBUG_LEVEL,
    "SlurmctldTimeout": NUMBER,
    "SlurmdDebug": DEBUG_LEVEL,
    "SlurmdParameters": ANY,
    "SlurmdSyslogDebug": DEBUG_LEVEL,
    "SlurmdTimeout": NUMBER,
    "SrunEpilog": PATH,
    "SrunPortRange": Rule("a port range such as 60001-63000", r"^\d{1,5}-\d{1,5}$"),
    "SrunProlog": PATH,
    "SuspendExcNodes": ANY,
    "SuspendExcParts": ANY,
    "SuspendProgram": PATH,
    "SuspendRate": NUMBER,
    "SuspendTime": NUMBER,
    "SuspendTimeout": NUMBER,
    "TaskEpilog": PATH,
    "TaskProlog": PATH,
    "TCPTimeout": NUMBER,
    "TmpFS": PATH,
    "TopologyParam": ANY,
    "TopologyPlugin": _plugins("topology", "none", "tree", "3d_torus", "hypercube"),
    "TrackWCKey": YES_NO,
    "TreeWidth": POSITIVE,
    "UnkillableStepProgram": PATH,
    "UnkillableStepTimeout": NUMBER,
    "UsePAM": _words("0", "1"),
    "VSizeFactor": NUMBER,
    "WaitTime": NUMBER,
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
    "PreemptMode": _words("OFF", "CANCEL", "GANG", "REQUEUE", "SUSPEND", lists=True),
    "PriorityJobFactor": NUMBER,
    "PriorityTier": NUMBER,
    "QOS": ANY,
    "ReqResv": YES_NO,
    "ResumeTimeout": NUMBER,
    "RootOnly": YES_NO,
    "SuspendTime": NUMBER,
    "SuspendTimeout": NUMBER,
}
PARTITION_OPTION_RULES: dict[str, Rule] = {k.lower(): v for k, v in _PARTITION.items()}
PARTITION_OPTION_NAMES: dict[str, str] = {k.lower(): k for k in _PARTITION}
