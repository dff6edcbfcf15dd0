"""A real dockerd, default iptables handling, inside an existing named network namespace.

    with Dockerd("some-netns") as dockerd:       # `docker info` answers over its private socket
        dockerd.forward_policy()                  # 'DROP': what a default dockerd does to FORWARD
        dockerd.docker("info")

Why: a default dockerd sets the FORWARD policy of its network namespace to DROP, and with
net.bridge.bridge-nf-call-iptables=1 frames bridged in that namespace traverse FORWARD. Tests run one
where they need "a host with a default dockerd running", without ever touching the real host:

* dockerd only ever runs in the given netns (never the host's), so its iptables rules, docker0 and its
  ip_forward change stay there;
* it runs in a private mount namespace with tmpfs over /run, /opt and /etc/docker: dockerd and its
  containerd create /run/docker, /run/containerd, /opt/containerd/{bin,lib} and /etc/docker/key.json
  whatever their flags say, and those vanish with them; data root, exec root, pid file, socket and an
  empty config live in a private temp dir, removed on exit; the docker client gets its own DOCKER_CONFIG;
* setpriv, nsenter, unshare and sh all exec, so the pid held is dockerd's own: stop() signals that pid
  (SIGTERM, SIGKILL after a timeout), then verifies the containerd it spawned is gone; pdeathsig kills
  dockerd should the test process die without its teardown, and `sweep_stale()` removes what such a run
  left behind.

Run as root; missing tools raise HarnessError (tests fail, never skip).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

from ._util import CLEAN_ENV, HarnessError, proc_alive, proc_comm, require_root, require_tools, run, sigkill, which
from .nodes import pids_in_netns

DOCKER_TOOLS = ("dockerd", "containerd", "runc", "docker", "iptables", "nsenter", "unshare", "setpriv", "ip")
BRIDGE_NF = "/proc/sys/net/bridge/bridge-nf-call-iptables"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
# What a dockerd on default paths would create on the host; none of it may appear.
HOST_DOCKER_PATHS = (
    "/run/docker.sock",
    "/var/run/docker.pid",
    "/var/lib/docker",
    "/run/docker",
    "/run/containerd",
    "/var/lib/containerd",
    "/opt/containerd",
    "/etc/docker/key.json",
)
# A Dockerd's private dir: hs-dockerd-<owner pid>-<hex>. Never of the Cluster debris shape
# (<prefix><6 hex>-), so no Cluster stale cleanup takes one; a dead owner's dir is swept by sweep_stale().
DIR_RE = re.compile(r"^hs-dockerd-(\d+)-[0-9a-f]{6}$")
# Fake hosts (fake_host_netns) are named hsfwh<owner pid>-<hex>, for the same reasons.
FAKE_HOST_RE = re.compile(r"^hsfwh(\d+)-[0-9a-f]{6}$")


def host_state() -> dict[str, object]:
    """What a test must leave exactly as it found it on the real host (read only)."""
    return {
        "forward": run(["iptables", "-S", "FORWARD"]).stdout,
        "bridge-nf-call-iptables": Path(BRIDGE_NF).read_text().strip() if Path(BRIDGE_NF).exists() else None,
        "ip_forward": Path(IP_FORWARD).read_text().strip(),
        "paths": {p: os.path.lexists(p) for p in HOST_DOCKER_PATHS},
    }


def nsrun(netns: str, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host binary inside a named netns (the host's mount namespace: only the network is switched)."""
    return run(["nsenter", f"--net=/run/netns/{netns}", *argv], check=check)


def netns_sysctl(netns: str, path: str, value: str | None = None) -> str:
    """Read (and first write, if value is given) a /proc/sys/net file *inside* netns; never the host's.

    /proc/sys/net resolves against the network namespace of the process that opens it, so the file is
    opened by a process nsenter'ed into netns. A sysctl that is not per netns does not exist there: that
    raises instead of silently reading (or writing) the host's."""
    if not path.startswith("/proc/sys/net/"):
        raise HarnessError(f"{path} is not a per-netns sysctl")
    if nsrun(netns, ["test", "-e", path], check=False).returncode != 0:
        raise HarnessError(
            f"{path} does not exist inside netns {netns}: not per netns on this kernel, or its module "
            "(br_netfilter for net.bridge.*) is not loaded; loading a module would change the real host"
        )
    if value is not None:
        nsrun(netns, ["sh", "-c", f"echo {value} > {path}"])
    return nsrun(netns, ["cat", path]).stdout.strip()


def bridge_nf_call_iptables(netns: str, *, enable: bool = False) -> str:
    """net.bridge.bridge-nf-call-iptables inside netns ('1': bridged IPv4 frames traverse iptables).

    br_netfilter's sysctls are per netns since Linux 5.3 (before, they existed in the initial namespace
    only), so the file existing inside netns proves it without writing anything. With enable, a '0' is
    set to '1' inside netns only."""
    current = netns_sysctl(netns, BRIDGE_NF)
    if enable and current != "1":
        current = netns_sysctl(netns, BRIDGE_NF, "1")
    return current


class Dockerd:
    """Context manager: a real dockerd with default iptables handling inside the existing netns `netns`.

    Its files live in a fresh dir under tmp_root (default: the temp dir), removed on exit."""

    def __init__(
        self,
        netns: str,
        tmp_root: Path | None = None,
        *,
        start_timeout: float = 30,
        stop_timeout: float = 20,
        config: str = "{}\n",
        path: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        """`config` is its daemon.json; `path` dirs go first on its PATH (runtimes it names, such as
        nvidia-container-runtime); `env` is added to its environment (containerd and runtimes inherit it)."""
        self.netns = netns
        self.config = config
        self.path = path
        self.extra_env = dict(env or {})
        root = Path(tempfile.gettempdir()) if tmp_root is None else tmp_root
        self.dir = root / f"hs-dockerd-{os.getpid()}-{secrets.token_hex(3)}"
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.containerd: list[int] = []
        self.startup_seconds = 0.0

    # -- paths -----------------------------------------------------------------------------------

    @property
    def sock(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def data_root(self) -> Path:
        return self.dir / "data"

    @property
    def exec_root(self) -> Path:
        return self.dir / "exec"

    @property
    def pidfile(self) -> Path:
        return self.dir / "docker.pid"

    @property
    def log(self) -> Path:
        return self.dir / "dockerd.log"

    @property
    def pid(self) -> int | None:
        """dockerd's own pid while it runs (set by start, kept after stop for checks)."""
        return None if self.proc is None else self.proc.pid

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        problems = self.close()
        if problems and exc is None:
            raise HarnessError("dockerd teardown: " + "; ".join(problems))

    def start(self) -> None:
        started = time.monotonic()
        require_root()
        require_tools(DOCKER_TOOLS)
        if not Path("/etc/docker").is_dir():
            # The private tmpfs for key.json is mounted there; creating it would change the host.
            raise HarnessError("/etc/docker is missing: install Debian's docker.io")
        if not Path("/run/netns", self.netns).exists():
            raise HarnessError(f"netns {self.netns} does not exist")
        sweep_stale()
        self.dir.mkdir(mode=0o700)
        for sub in ("data", "exec", "client"):
            (self.dir / sub).mkdir()
        (self.dir / "daemon.json").write_text(self.config)
        # A private mount namespace: tmpfs mounts that only dockerd and its containerd see keep the paths
        # they insist on off the host, and vanish with them.
        script = textwrap.dedent(
            f"""\
            set -e
            mount -t tmpfs -o mode=755 tmpfs /run
            mount -t tmpfs -o mode=755 tmpfs /opt
            mount -t tmpfs -o mode=755 tmpfs /etc/docker
            exec dockerd --data-root {self.data_root} --exec-root {self.exec_root} \\
                --pidfile {self.pidfile} -H unix://{self.sock} --config-file {self.dir}/daemon.json
            """
        )
        # setpriv, nsenter, unshare and sh all exec: the Popen pid *is* dockerd's, and pdeathsig kills it
        # should this process die without its teardown.
        argv = [
            "setpriv", "--pdeathsig", "KILL",
            "nsenter", f"--net=/run/netns/{self.netns}",
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", script,
        ]  # fmt: skip
        env = {**CLEAN_ENV, **self.extra_env, "PATH": ":".join([*self.path, CLEAN_ENV["PATH"]])}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self.start_timeout
        while self.docker("info", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(
                    f"dockerd did not answer within {self.start_timeout}s:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.1)
        while not self.containerd and time.monotonic() < deadline:
            self.containerd = [p for p in _children(self.proc.pid) if proc_comm(p) == "containerd"]
            time.sleep(0.05)
        if not self.containerd:
            raise HarnessError(f"no containerd child of dockerd {self.proc.pid}:\n{self.log.read_text()[-3000:]}")
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> list[str]:
        """SIGTERM dockerd by its pid (SIGKILL if it hangs); report (and kill) whatever of it outlives it.

        Safe to call twice; the temp dir stays (close() removes it)."""
        problems: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                problems.append(f"dockerd {self.proc.pid} ignored SIGTERM for {self.stop_timeout}s")
                self.proc.kill()
                self.proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while any(proc_alive(p) for p in self.containerd) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [p for p in self.containerd if proc_alive(p)]
        problems += [f"containerd {p} outlived dockerd" for p in survivors]
        for pid in survivors:  # dockerd's own child, recorded at start
            sigkill(pid)
        # Anything else still naming our dir (a containerd shim, say) is ours too.
        for pid in _pids_mentioning(self.dir):
            problems.append(f"{proc_comm(pid)} {pid} outlived dockerd")
            sigkill(pid)
        return problems

    def close(self) -> list[str]:
        """stop(), then remove the temp dir (dockerd's mounts lived in its own mount namespace: nothing is
        mounted under it on the host)."""
        problems = self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dir.exists():
            problems.append(f"dir {self.dir} survived")
        return problems

    # -- API -------------------------------------------------------------------------------------

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The docker client against this dockerd only (its private socket; DOCKER_CONFIG in our dir, so
        root's ~/.docker is neither read nor written)."""
        client = which("docker")
        assert client is not None
        env = {**CLEAN_ENV, "DOCKER_CONFIG": str(self.dir / "client")}
        return run([client, "-H", f"unix://{self.sock}", *args], check=check, env=env, timeout=30)

    def nsrun(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return nsrun(self.netns, argv, check=check)

    def forward_policy(self) -> str:
        """The policy of the FORWARD chain in dockerd's netns ('DROP' after a default dockerd started)."""
        out = self.nsrun(["iptables", "-S", "FORWARD"]).stdout
        m = re.search(r"^-P FORWARD (\S+)$", out, re.MULTILINE)
        if m is None:
            raise HarnessError(f"no FORWARD policy in `iptables -S FORWARD` of {self.netns}:\n{out}")
        return m.group(1)


def _children(pid: int) -> list[int]:
    """Children of every thread of pid: Go forks from whichever thread runs the goroutine, so the main
    thread's /proc/pid/task/pid/children alone misses some."""
    found: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    for tid in tids:
        try:
            found.update(int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return sorted(found)


def _pids_mentioning(path: Path) -> list[int]:
    """Live processes whose command line names path or something under it: a Dockerd's dir is unique
    (owner pid + random hex), so these are that Dockerd's dockerd, containerd and shims."""
    needle = str(path).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        named = any(a == needle or a.startswith(needle + b"/") or b"=" + needle in a for a in args)
        if named and proc_alive(int(entry)):
            found.append(int(entry))
    return found


# --- fake hosts and stale cleanup ---------------------------------------------------------------------------


@contextmanager
def fake_host_netns() -> Iterator[str]:
    """A fresh named netns (lo up) to play the host; on exit, whatever still runs in it is reported and
    killed (only processes inside this namespace, which this run created) and the netns is deleted."""
    sweep_stale()
    name = f"hsfwh{os.getpid()}-{secrets.token_hex(3)}"
    problems: list[str] = []
    failed = True
    try:
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
        failed = False
    finally:
        left = pids_in_netns(name)
        if left:
            problems.append(f"processes {left} still ran in {name}")
            for pid in left:
                sigkill(pid)
        problems += _remove_netns(name)
    if problems and not failed:
        raise HarnessError("fake host teardown left debris: " + "; ".join(problems))


def _remove_netns(netns: str) -> list[str]:
    if Path("/run/netns", netns).exists():
        run(["ip", "netns", "del", netns], check=False)
    return [f"netns {netns} survived"] if Path("/run/netns", netns).exists() else []


def sweep_stale() -> list[str]:
    """Remove what Dockerds and fake hosts of dead owners left (SIGKILL skips teardown); returns it."""
    removed = []
    tmp = Path(tempfile.gettempdir())
    for entry in tmp.iterdir() if tmp.is_dir() else ():
        m = DIR_RE.match(entry.name)
        if m is None or proc_alive(int(m.group(1))):
            continue
        for pid in _pids_mentioning(entry):
            sigkill(pid)
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(str(entry))
    names = os.listdir("/run/netns") if Path("/run/netns").exists() else []
    for name in names:
        m = FAKE_HOST_RE.match(name)
        if m is None or proc_alive(int(m.group(1))):
            continue
        for pid in pids_in_netns(name):  # only processes inside a fake host a dead run created
            sigkill(pid)
        _remove_netns(name)
        # Fake hosts once kept dockerd's files in a same-named temp dir.
        shutil.rmtree(tmp / name, ignore_errors=True)
        removed.append(f"netns {name}")
    return removed
