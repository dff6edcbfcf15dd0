"""Validate a slurm.conf by booting a real slurmctld in a throwaway namespace.

There is no `slurmctld -t`. A bad config makes `slurmctld -D` exit within milliseconds; a good one
reaches "Running as primary controller". See "slurmctld as a config validator" in
/work/shared/reference/sandbox.md, including why every path the daemon writes is redirected: a namespaced
slurmctld writes pid 1 into its pid file, and a later real start would SIGTERM the host's PID 1.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ._util import (
    CLEAN_ENV,
    HarnessError,
    children_of,
    mounts_under,
    proc_start_time,
    require_root,
    require_tools,
    sigkill,
)

CHECK_TOOLS = ("slurmctld", "munged", "unshare", "setpriv", "ip", "mount", "hostname")
NS_ADDRESS = "10.254.0.1"
READY = "Running as primary controller"
QUIET_LEVELS = ("quiet", "fatal", "error")  # SlurmctldDebug levels that hide READY
# Where slurmctld puts its pid file when the conf names none; these must never be written by us.
DEFAULT_PID_FILES = ("/run/slurmctld.pid", "/var/run/slurmctld.pid")


@dataclass(frozen=True)
class Result:
    ok: bool
    log: str
    reason: str = ""


@dataclass
class ConfInfo:
    """The parts of a slurm.conf the validator needs. Keys of `values` are lower-case."""

    controllers: list[str] = field(default_factory=list)
    controller_addrs: list[str] = field(default_factory=list)
    node_names: list[str] = field(default_factory=list)
    node_hostnames: list[str] = field(default_factory=list)
    node_addrs: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key.lower(), default)

    def host_names(self) -> list[str]:
        """Every name slurmctld may try to resolve (IP literals excluded)."""
        names = [
            *self.controllers,
            *self.controller_addrs,
            *self.node_names,
            *self.node_hostnames,
            *self.node_addrs,
        ]
        return sorted({n for n in names if n and n.upper() != "DEFAULT" and not _is_ip(n)})


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def expand_hostlist(expr: str) -> list[str]:
    """Expand a SLURM hostlist: "gpu[01-03],cpu[1,4],login" -> gpu01 gpu02 gpu03 cpu1 cpu4 login."""
    out: list[str] = []
    for item in _split_outside_brackets(expr):
        out += _expand_one(item)
    return out


def _split_outside_brackets(expr: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in expr:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _expand_one(item: str) -> list[str]:
    m = re.search(r"\[([^\]]*)\]", item)
    if m is None:
        return [item]
    head, tail = item[: m.start()], item[m.end() :]
    results = []
    for rng in m.group(1).split(","):
        lo, _, hi = rng.partition("-")
        if not hi:
            numbers = [lo]
        elif lo.isdigit() and hi.isdigit():
            numbers = [str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1)]
        else:
            numbers = [rng]  # not a range we understand; slurmctld will judge it
        for num in numbers:
            results += _expand_one(head + num + tail)
    return results


_PAIR_RE = re.compile(r'([A-Za-z][A-Za-z0-9_]*)\s*=\s*("[^"]*"|\S+)')


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comments (unescaped '#') removed."""
    joined = re.sub(r"\\\n", " ", text)
    return [re.split(r"(?<!\\)#", line, maxsplit=1)[0] for line in joined.splitlines()]


def parse_slurm_conf(text: str) -> ConfInfo:
    info = ConfInfo()
    for line in _logical_lines(text):
        pairs = [(k.lower(), v.strip('"')) for k, v in _PAIR_RE.findall(line)]
        if not pairs:
            continue
        first = pairs[0][0]
        if first == "nodename":
            for key, value in pairs:
                target = {
                    "nodename": info.node_names,
                    "nodehostname": info.node_hostnames,
                    "nodeaddr": info.node_addrs,
                }.get(key)
                if target is not None:
                    target += expand_hostlist(value)
        elif first in ("slurmctldhost", "controlmachine", "backupcontroller"):
            # SlurmctldHost=name or name(addr)
            m = re.match(r"^([^(]+)(?:\((.*)\))?$", pairs[0][1])
            if m:
                info.controllers.append(m.group(1))
                if m.group(2):
                    info.controller_addrs.append(m.group(2))
        elif first in ("controladdr", "backupaddr"):
            info.controller_addrs.append(pairs[0][1])
        elif first != "partitionname" and len(pairs) == 1:
            info.values[first] = pairs[0][1]
    return info


def _rewrite(text: str, overrides: dict[str, str | None]) -> str:
    """Replace (or append) single-key lines, matching keys case-insensitively like slurmctld does.
    A value of None drops the key."""
    lower = {k.lower(): (k, v) for k, v in overrides.items()}
    seen: set[str] = set()
    out = []
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=", line)
        key = m.group(1).lower() if m else ""
        if key in lower:
            name, value = lower[key]
            if value is not None:
                out.append(f"{name}={value}")
            seen.add(key)
        else:
            out.append(line)
    out += [f"{name}={value}" for key, (name, value) in lower.items() if key not in seen and value is not None]
    return "\n".join(out) + "\n"


def check_slurm_conf(
    conf_text: str,
    extra_files: dict[str, str] | None = None,
    timeout: float = 15,
    *,
    offline_accounting: bool = True,
    settle: float = 0.2,
) -> Result:
    """Boot `slurmctld -D` on `conf_text` in throwaway namespaces and report whether it came up.

    `extra_files` (gres.conf, cgroup.conf, ...) are written beside the conf. Every path slurmctld would
    write (pid file, state, logs) is redirected into a temporary directory, and any pre-existing pid
    file on the host is masked with a private bind mount. With `offline_accounting`, a slurmdbd
    accounting backend is swapped for `accounting_storage/none`, since no slurmdbd is reachable from
    the namespace and slurmctld would die for that reason alone. After the ready line it waits `settle`
    seconds more, to catch a fatal error right after start-up.
    """
    require_root()
    require_tools(CHECK_TOOLS)
    extra_files = extra_files or {}
    for name in extra_files:
        if "/" in name or name in ("", ".", "..", "slurm.conf"):
            raise ValueError(f"extra file names must be plain file names, got {name!r}")
    info = parse_slurm_conf(conf_text)
    tmp = Path(tempfile.mkdtemp(prefix="hsck-"))
    try:
        return _check(conf_text, extra_files, timeout, info, tmp, offline_accounting, settle)
    finally:
        if not mounts_under(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _check(
    conf_text: str,
    extra_files: dict[str, str],
    timeout: float,
    info: ConfInfo,
    tmp: Path,
    offline_acct: bool,
    settle: float,
) -> Result:
    tmp.chmod(0o755)  # slurmctld drops to SlurmUser and must still read the conf
    user = info.get("SlurmUser", "root")
    notes = []
    try:
        uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
    except KeyError:
        uid, gid = 0, 0
        notes.append(f"validator: SlurmUser {user!r} does not exist on this host")
    state = tmp / "state"
    state.mkdir()
    log = tmp / "slurmctld.log"
    for path in (log, tmp / "sched.log"):
        path.touch()
        os.chown(path, uid, gid)
    # Not pre-created: slurmctld reads an existing pid file and would call an empty one corrupt.
    run_dir = tmp / "run"
    run_dir.mkdir()
    os.chown(run_dir, uid, gid)
    pid_file = run_dir / "slurmctld.pid"
    guard = tmp / "guard.pid"
    guard.touch()
    munge = tmp / "munge"
    munge.mkdir(mode=0o700)
    (munge / "key").write_bytes(os.urandom(1024))
    (munge / "key").chmod(0o400)

    overrides: dict[str, str | None] = {
        "SlurmctldPidFile": str(pid_file),
        "StateSaveLocation": str(state),
        "SlurmctldLogFile": str(log),
        "SlurmSchedLogFile": str(tmp / "sched.log"),
        "SlurmdSpoolDir": str(tmp / "spool"),
        "SlurmdLogFile": str(tmp / "slurmd.log"),
        "SlurmdPidFile": str(tmp / "slurmd.pid"),
    }
    # Keys slurmctld itself does not write are redirected only when present, to keep the conf recognisable.
    for key in ("SlurmSchedLogFile", "SlurmdSpoolDir", "SlurmdLogFile", "SlurmdPidFile"):
        if not info.get(key):
            del overrides[key]
    if info.get("JobCompType").lower() == "jobcomp/filetxt":
        # slurmctld opens it as SlurmUser at start-up ("fatal: open .../jobcomp.txt: Permission denied").
        jobcomp = tmp / "jobcomp.txt"
        jobcomp.touch()
        os.chown(jobcomp, uid, gid)
        overrides["JobCompLoc"] = str(jobcomp)
    if info.get("SlurmctldDebug").lower() in QUIET_LEVELS:
        # Below info slurmctld never logs READY, so the check could only time out; the level changes nothing else.
        overrides["SlurmctldDebug"] = "info"
        notes.append(f"validator: SlurmctldDebug={info.get('SlurmctldDebug')} raised to info to see {READY!r}")
    if offline_acct and info.get("AccountingStorageType").lower() == "accounting_storage/slurmdbd":
        overrides["AccountingStorageType"] = "accounting_storage/none"
        # Tracking TRES (gres/gpu) needs slurmdbd, so it goes too; the rest of the file is checked as is.
        overrides["AccountingStorageTRES"] = None
        notes.append("validator: accounting_storage/slurmdbd replaced by accounting_storage/none")
    conf = tmp / "slurm.conf"
    conf.write_text(_rewrite(conf_text, overrides))
    for name, text in extra_files.items():
        (tmp / name).write_text(text)

    # One name per line: a single huge line is asking for trouble with big node lists.
    hosts = ["127.0.0.1 localhost", *(f"{NS_ADDRESS} {n}" for n in info.host_names() or ["slurmctld-check"])]
    (tmp / "hosts").write_text("\n".join(hosts) + "\n")
    hostname = info.controllers[0] if info.controllers else "slurmctld-check"

    # Mask every pid file a real slurmctld could be using, whatever the rewritten conf says.
    masks = {os.path.realpath(p) for p in [*DEFAULT_PID_FILES, info.get("SlurmctldPidFile")] if p}
    masks = {p for p in masks if os.path.isfile(p)}
    q = shlex.quote
    script = "\n".join(
        [
            "set -e",
            f"hostname {q(hostname)}",
            "ip link set lo up",
            # A real (veth) address: with only lo, AI_ADDRCONFIG makes even 127.0.0.1 unresolvable.
            "ip link add d0 type veth peer name d1",
            f"ip addr add {NS_ADDRESS}/24 dev d0",
            "ip link set d1 up",
            "ip link set d0 up",
            f"mount --bind {q(str(tmp / 'hosts'))} /etc/hosts",
            *[f"mount --bind {q(str(guard))} {q(m)}" for m in sorted(masks)],
            f"mount -t tmpfs -o mode=700 tmpfs {q(str(state))}",
            # A private /run with its own munged: without one slurmctld spends 2 s retrying munge, and
            # the tmpfs also hides every host pid file under /run.
            "mount -t tmpfs -o mode=755 tmpfs /run",
            "mkdir -m 755 /run/munge",
            f"munged --key-file={q(str(munge / 'key'))} --pid-file={q(str(munge / 'pid'))} "
            f"--log-file={q(str(munge / 'log'))} --seed-file={q(str(munge / 'seed'))}",
            f"chown {uid}:{gid} {q(str(state))}",
            f"slurmctld -D -c -f {q(str(conf))} -L {q(str(log))} &",
            "wait $!",
        ]
    )
    out_path = tmp / "stdout.log"
    started = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [
                "setpriv", "--pdeathsig", "KILL",
                "unshare", "--uts", "--net", "--mount", "--pid", "--mount-proc", "--fork",
                "--kill-child=SIGKILL", "--propagation", "private",
                "sh", "-c", script,
            ],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=CLEAN_ENV,
            start_new_session=True,
        )  # fmt: skip
    init_pid: int | None = None
    init_start: int | None = None
    ok, reason = False, ""
    ready_at: float | None = None
    try:
        while True:
            if init_pid is None:
                kids = children_of(proc.pid)
                if kids:
                    init_pid, init_start = kids[0], proc_start_time(kids[0])
            text = _read(log) + _read(out_path)
            if READY in text and ready_at is None:
                ready_at = time.monotonic()
            if ready_at is not None and time.monotonic() - ready_at >= settle and "fatal:" not in text:
                ok, reason = True, "slurmctld is running as primary controller"
                break
            if proc.poll() is not None:
                reason = f"slurmctld exited (rc={proc.returncode})"
                break
            if "fatal:" in text:
                reason = "slurmctld logged a fatal error"
                break
            if time.monotonic() - started > timeout:
                reason = f"slurmctld neither failed nor became ready within {timeout}s"
                break
            time.sleep(0.02)
    finally:
        # The namespace init ignores SIGTERM; SIGKILL takes the whole pid namespace down.
        if init_pid is None:
            kids = children_of(proc.pid)
            init_pid, init_start = (kids[0], proc_start_time(kids[0])) if kids else (None, None)
        if init_pid is not None:
            sigkill(init_pid, init_start)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.returncode is None:
        raise HarnessError("validator namespace did not exit")
    full_log = "\n".join([*notes, _read(log), _read(out_path)]).strip()
    return Result(ok=ok, log=full_log, reason=reason)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
