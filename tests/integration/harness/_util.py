"""Small helpers shared by the harness modules: tool checks, subprocess wrappers, process probing."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

# The venv's PATH may lack the sbin directories where ip/sshd/slurmctld live.
SEARCH_PATH = os.pathsep.join(
    dict.fromkeys([*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
)
# A clean environment for everything we start, so the caller's venv/pyenv variables never leak in.
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class HarnessError(RuntimeError):
    """The harness cannot do its job (missing tool, not root, a command failed)."""


def which(tool: str) -> str | None:
    return shutil.which(tool, path=SEARCH_PATH)


def require_root() -> None:
    if os.geteuid() != 0:
        raise HarnessError("the integration harness needs root (namespaces, mounts, veth, bridges)")


def require_tools(tools: Iterable[str]) -> None:
    """Fail loudly (never skip) when a needed tool is absent."""
    missing = [t for t in tools if which(t) is None]
    if missing:
        raise HarnessError(
            f"missing tools for the integration harness: {', '.join(missing)} "
            "(install the Debian packages listed in /work/shared/reference/sandbox.md)"
        )


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 120,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a host command, raising HarnessError with its output when it fails."""
    proc = subprocess.run(
        list(argv),
        input=input,
        capture_output=True,
        timeout=timeout,
        env=CLEAN_ENV if env is None else env,
        check=False,
    )
    result = subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
    )
    if check and result.returncode != 0:
        raise HarnessError(
            f"command failed (rc={result.returncode}): {' '.join(argv)}\n"
            f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
        )
    return result


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of a process (field 22 of /proc/pid/stat); None if it is gone.

    Pairs with the pid to tell a live owner from a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces/parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def proc_alive(pid: int, start_time: int | None = None) -> bool:
    current = proc_start_time(pid)
    if current is None:
        return False
    if start_time is not None and current != start_time:
        return False
    # A zombie is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [int(p) for p in text.split()]


def proc_comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def wait_for_child(parent_pid: int, timeout: float = 10.0) -> int:
    """The forked child of an `unshare --fork` process: the new namespace's init."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children_of(parent_pid)
        if kids:
            return kids[0]
        if not proc_alive(parent_pid):
            raise HarnessError(f"unshare (pid {parent_pid}) exited before forking its namespace init")
        time.sleep(0.005)
    raise HarnessError(f"unshare (pid {parent_pid}) did not fork a child within {timeout}s")


def sigkill(pid: int, start_time: int | None = None) -> None:
    """SIGKILL one process we started, verified by start time so a recycled pid is never hit."""
    if start_time is not None and proc_start_time(pid) != start_time:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def mounts_under(path: Path) -> list[str]:
    """Mount points in this mount namespace at or below `path`, deepest first."""
    root = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # mountinfo escapes space, tab, newline and backslash as \ooo octal.
        mnt = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if mnt == root or mnt.startswith(root + "/"):
            found.append(mnt)
    return sorted(found, key=len, reverse=True)


def umount_all_under(path: Path) -> None:
    for mnt in mounts_under(path):
        run(["umount", "-l", mnt], check=False)
