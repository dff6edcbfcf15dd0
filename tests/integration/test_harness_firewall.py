"""The namespaced harness does not depend on the host's firewall (issue 8, item 6).

A default dockerd sets the FORWARD policy of its network namespace to DROP. With
net.bridge.bridge-nf-call-iptables=1, frames bridged in that namespace traverse FORWARD and are dropped,
so a harness whose bridge sits in the host's namespace loses node<->node traffic ("nodes not responding").
Here a "fake host" network namespace runs a real dockerd with default iptables handling and plays the host
(Cluster(host_netns=...)):

1. the fake host really has `-P FORWARD DROP` and bridge-nf-call-iptables=1;
2. negative control: the old topology (bridge in the host-side namespace) drops node1 -> node2 while the
   fake host still reaches both nodes over SSH;
3. the switch-namespace topology keeps node1 -> node2 working and runs a multi-node SLURM job.

Nothing here touches the real host's firewall or sysctls; dockerd keeps its data, exec root, pid file,
socket and config in a temp dir and runs in a private mount namespace, so even the paths it insists on
(/run/docker, /opt/containerd, /etc/docker/key.json) never reach the host. Run as root; missing tools fail.
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
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, HarnessError, Node, require_tools
from tests.integration.harness._util import CLEAN_ENV, proc_alive, proc_comm, run, sigkill, which
from tests.integration.harness.fixtures import harness_preflight  # noqa: F401 (fixture)
from tests.integration.harness.nodes import pids_in_netns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("harness_preflight")]

DOCKER_TOOLS = ("dockerd", "containerd", "runc", "docker", "iptables", "nsenter", "unshare", "setpriv", "ip")
PREFIX = "hsfw"  # the clusters' prefix
# Fake hosts are named hsfwh<owner pid>-<hex>: never of the harness's <prefix><6 hex>- shape, so no
# Cluster's stale cleanup can take one for debris; a dead owner's fake host is swept by the next run.
FAKE_HOST_RE = re.compile(r"^hsfwh(\d+)-[0-9a-f]{6}$")
BRIDGE_NF = "/proc/sys/net/bridge/bridge-nf-call-iptables"
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

SLURM_CONF = textwrap.dedent(
    """\
    ClusterName=hsfw
    SlurmctldHost=node1
    SlurmUser=root
    MailProg=/bin/true
    StateSaveLocation=/var/lib/slurm/slurmctld
    SlurmdSpoolDir=/var/lib/slurm/slurmd
    SlurmctldPidFile=/run/slurmctld.pid
    SlurmdPidFile=/run/slurmd.pid
    SlurmctldLogFile=/var/log/slurm/slurmctld.log
    SlurmdLogFile=/var/log/slurm/slurmd.log
    ProctrackType=proctrack/linuxproc
    TaskPlugin=task/none
    SelectType=select/cons_tres
    SelectTypeParameters=CR_Core
    MpiDefault=none
    ReturnToService=2
    AccountingStorageType=accounting_storage/none
    JobAcctGatherType=jobacct_gather/none
    NodeName=node[2-3] CPUs=1 RealMemory=100 State=UNKNOWN
    PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
    """
)


# --- the fake host ---------------------------------------------------------------------------------------


def _host_state() -> dict[str, object]:
    """What this test must leave exactly as it found it on the real host (read only)."""
    return {
        "forward": run(["iptables", "-S", "FORWARD"]).stdout,
        "bridge-nf-call-iptables": Path(BRIDGE_NF).read_text().strip() if Path(BRIDGE_NF).exists() else None,
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        "paths": {p: os.path.lexists(p) for p in HOST_DOCKER_PATHS},
    }


@dataclass
class FakeHost:
    """A named netns with a real dockerd (default iptables handling) that plays the host."""

    netns: str
    tmp: Path
    proc: subprocess.Popen[bytes] | None = None
    containerd: list[int] = field(default_factory=list)
    dockerd_pid: int | None = None

    @property
    def sock(self) -> Path:
        return self.tmp / "docker.sock"

    @property
    def exec_root(self) -> Path:
        return self.tmp / "exec"

    @property
    def log(self) -> Path:
        return self.tmp / "dockerd.log"

    def nsrun(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["nsenter", f"--net=/run/netns/{self.netns}", *argv], check=check)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        client = which("docker")
        assert client is not None
        # DOCKER_CONFIG: the client must not read or write root's ~/.docker either.
        env = {**CLEAN_ENV, "DOCKER_CONFIG": str(self.tmp / "client")}
        return run([client, "-H", f"unix://{self.sock}", *args], check=check, env=env, timeout=30)

    def links(self) -> str:
        return run(["ip", "-n", self.netns, "-o", "link", "show"]).stdout

    def forward_drops(self) -> int:
        """Packets the FORWARD chain's DROP policy has dropped in the fake host so far."""
        out = self.nsrun(["iptables", "-L", "FORWARD", "-n", "-v", "-x"]).stdout
        m = re.search(r"Chain FORWARD \(policy DROP (\d+) packets", out)
        assert m, f"the fake host's FORWARD policy is not DROP:\n{out}"
        return int(m.group(1))

    def count_forwarded(self, subnet: str) -> None:
        """A counting rule (no target: it only counts) for node<->node packets in the fake host's FORWARD."""
        net = f"{subnet}.0/24"
        self.nsrun(
            ["iptables", "-I", "FORWARD", "1", "-s", net, "-d", net, "-m", "comment", "--comment", f"hsfw {net}"]
        )

    def forwarded(self, subnet: str) -> int:
        """Node<->node packets the fake host's FORWARD chain has seen (needs count_forwarded first)."""
        out = self.nsrun(["iptables", "-L", "FORWARD", "-n", "-v", "-x"]).stdout
        m = re.search(rf"^\s*(\d+)\s+\d+\s.*/\* hsfw {re.escape(subnet)}\.0/24 \*/", out, re.MULTILINE)
        assert m, f"no counting rule for {subnet}.0/24:\n{out}"
        return int(m.group(1))

    def start_dockerd(self, timeout: float = 30) -> None:
        for sub in ("data", "exec", "client"):
            (self.tmp / sub).mkdir(parents=True, exist_ok=True)
        (self.tmp / "daemon.json").write_text("{}\n")
        # A private mount namespace: dockerd and its containerd create /run/docker/plugins,
        # /opt/containerd/{bin,lib} and /etc/docker/key.json whatever their flags say; tmpfs mounts that
        # only they see keep those off the host, and vanish with them.
        script = textwrap.dedent(
            f"""\
            set -e
            mount -t tmpfs -o mode=755 tmpfs /run
            mount -t tmpfs -o mode=755 tmpfs /opt
            mount -t tmpfs -o mode=755 tmpfs /etc/docker
            exec dockerd --data-root {self.tmp}/data --exec-root {self.exec_root} \\
                --pidfile {self.tmp}/docker.pid -H unix://{self.sock} --config-file {self.tmp}/daemon.json
            """
        )
        # setpriv, nsenter, unshare and sh all exec: the Popen pid *is* dockerd's, and pdeathsig kills it
        # should this test process die without its teardown.
        argv = [
            "setpriv", "--pdeathsig", "KILL",
            "nsenter", f"--net=/run/netns/{self.netns}",
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", script,
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=CLEAN_ENV,
                start_new_session=True,
            )  # fmt: skip
        self.dockerd_pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while self.docker("info", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"dockerd did not answer within {timeout}s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        while not self.containerd and time.monotonic() < deadline:
            self.containerd = [p for p in _children(self.proc.pid) if proc_comm(p) == "containerd"]
            time.sleep(0.05)

    def stop_dockerd(self, timeout: float = 20) -> list[str]:
        """SIGTERM our dockerd by its pid (SIGKILL if it hangs); report whatever outlives it."""
        problems: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                problems.append(f"dockerd {self.proc.pid} ignored SIGTERM for {timeout}s")
                self.proc.kill()
                self.proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while any(proc_alive(p) for p in self.containerd) and time.monotonic() < deadline:
            time.sleep(0.05)
        problems += [f"containerd {p} outlived dockerd" for p in self.containerd if proc_alive(p)]
        return problems

    def destroy(self) -> list[str]:
        problems = self.stop_dockerd()
        left = pids_in_netns(self.netns)
        if left:
            problems.append(f"processes {left} still ran in {self.netns}")
            _kill_all(left)
        problems += _remove_fake_host(self.netns, self.tmp)
        return problems


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


def _kill_all(pids: list[int]) -> None:
    for pid in pids:  # only ever processes inside a fake-host netns this test created
        sigkill(pid)


def _remove_fake_host(netns: str, tmp: Path) -> list[str]:
    problems = []
    if Path("/run/netns", netns).exists():
        run(["ip", "netns", "del", netns], check=False)
    if Path("/run/netns", netns).exists():
        problems.append(f"netns {netns} survived")
    # dockerd's mounts lived in its private mount namespace: nothing is mounted under tmp on the host.
    shutil.rmtree(tmp, ignore_errors=True)
    if tmp.exists():
        problems.append(f"dir {tmp} survived")
    return problems


def _sweep_dead_fake_hosts() -> None:
    """Fake hosts whose owning test process died (SIGKILL skips fixture teardown)."""
    names = os.listdir("/run/netns") if Path("/run/netns").exists() else []
    for name in names:
        m = FAKE_HOST_RE.match(name)
        if m is None or proc_alive(int(m.group(1))):
            continue
        _kill_all(pids_in_netns(name))
        _remove_fake_host(name, Path(tempfile.gettempdir()) / name)


@pytest.fixture(scope="module")
def host_before() -> dict[str, object]:
    return _host_state()


@pytest.fixture(scope="module")
def fake_host(host_before: dict[str, object]) -> Iterator[FakeHost]:
    require_tools(DOCKER_TOOLS)
    if not Path("/etc/docker").is_dir():
        raise HarnessError("/etc/docker is missing: install Debian's docker.io (dockerd's private tmpfs goes there)")
    _sweep_dead_fake_hosts()
    name = f"hsfwh{os.getpid()}-{secrets.token_hex(3)}"
    host = FakeHost(netns=name, tmp=Path(tempfile.gettempdir()) / name)
    try:
        host.tmp.mkdir(mode=0o700)
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        host.start_dockerd()
        yield host
    finally:
        problems = host.destroy()
        if problems:
            pytest.fail("fake host teardown left debris: " + "; ".join(problems))


def _node_connects(node_from: Node, address: str, seconds: int = 3) -> int:
    """rc of a TCP connect to address:22 from a node: 0 connected, 1 refused, 124 nothing came back."""
    proc = node_from.ssh(f"timeout {seconds} bash -c 'echo > /dev/tcp/{address}/22'", check=False)
    return int(proc.returncode)


# --- 1. the fake host has the firewall that breaks a bridged harness ---------------------------------------


def test_fake_host_runs_a_real_dockerd_with_default_iptables(fake_host: FakeHost) -> None:
    assert fake_host.proc is not None
    # The pid we hold is dockerd itself, and its pid file and data root are ours (the host's default
    # paths are checked by the last test).
    assert proc_comm(fake_host.proc.pid) == "dockerd"
    assert (fake_host.tmp / "docker.pid").read_text().strip() == str(fake_host.proc.pid)
    info = fake_host.docker("info", "--format", "{{.DockerRootDir}} {{.ServerVersion}}").stdout.split()
    assert info[0] == str(fake_host.tmp / "data"), info
    # Its containerd is its child, in the fake host's netns, and keeps its files under our exec root.
    assert fake_host.containerd, f"no containerd child of dockerd {fake_host.proc.pid}"
    for pid in fake_host.containerd:
        assert pid in pids_in_netns(fake_host.netns)
        assert str(fake_host.exec_root) in Path(f"/proc/{pid}/cmdline").read_text()

    # dockerd's default iptables handling, in the fake host only.
    forward = fake_host.nsrun(["iptables", "-S", "FORWARD"]).stdout
    assert "-P FORWARD DROP" in forward.splitlines(), forward
    assert "-A FORWARD -j DOCKER-USER" in forward
    assert "docker0" in fake_host.links()

    # br_netfilter's sysctls are per netns on this kernel: before they were (Linux < 5.3) they existed in
    # the initial namespace only, so the file existing inside a namespace of ours proves it, without
    # writing anything. Only then may it be enabled, and only inside the fake host.
    present = fake_host.nsrun(["test", "-e", BRIDGE_NF], check=False).returncode == 0
    if not present:
        raise HarnessError(
            f"{BRIDGE_NF} does not exist inside a network namespace: br_netfilter is not loaded or its "
            "sysctls are not per netns; loading a kernel module would change the real host, so fail"
        )
    if fake_host.nsrun(["cat", BRIDGE_NF]).stdout.strip() != "1":
        fake_host.nsrun(["sh", "-c", f"echo 1 > {BRIDGE_NF}"])
    assert fake_host.nsrun(["cat", BRIDGE_NF]).stdout.strip() == "1"


# --- 2. negative control: the old topology is broken by that firewall ------------------------------------


def test_legacy_bridge_in_a_firewalled_host_drops_node_traffic(fake_host: FakeHost) -> None:
    with Cluster(2, prefix=PREFIX, host_netns=fake_host.netns, _legacy_bridge=True) as c:
        assert c.switch_netns is None and c.bridge_netns == fake_host.netns
        assert f" {c.bridge}:" in fake_host.links(), "the legacy bridge must sit in the fake host"
        host_links = run(["ip", "-o", "link", "show"]).stdout
        assert c.bridge not in host_links, "the real host must not see the test's bridge"
        # The fake host reaches both nodes: its own traffic is INPUT/OUTPUT, not FORWARD.
        assert [n.ssh("hostname").stdout.strip() for n in c.nodes] == ["node1", "node2"]
        fake_host.count_forwarded(c.subnet)
        drops = fake_host.forward_drops()
        rc = _node_connects(c["node1"], c["node2"].address)
        assert rc == 124, f"node1 -> node2 must time out (dropped) in the legacy topology, got rc {rc}"
        # The bridged frames went through the fake host's FORWARD chain and its DROP policy ate them.
        assert fake_host.forwarded(c.subnet) > 0
        assert fake_host.forward_drops() > drops, "the drops must come from the fake host's FORWARD policy"


# --- 3. the switch namespace makes the harness immune ------------------------------------------------------


def test_switch_namespace_survives_a_firewalled_host(fake_host: FakeHost) -> None:
    started = time.monotonic()
    with Cluster(3, prefix=PREFIX, host_netns=fake_host.netns) as c:
        assert c.switch_netns and c.uplink
        fake_host.count_forwarded(c.subnet)
        # Only the uplink is in the (fake) host, carrying .1; the real host sees nothing of the run.
        assert f" {c.uplink}@" in fake_host.links() and f" {c.bridge}:" not in fake_host.links()
        addr = run(["ip", "-n", fake_host.netns, "-o", "-4", "addr", "show", "dev", c.uplink]).stdout
        assert f"inet {c.host_address}/24" in addr
        host_links = run(["ip", "-o", "link", "show"]).stdout
        assert f"{PREFIX}{c.run_id}" not in host_links, "the real host must not see the run's links"
        assert f" {c.bridge}:" in run(["ip", "-n", c.switch_netns, "-o", "link", "show"]).stdout
        # ssh (and its ControlMaster) run inside the fake host.
        assert c["node1"].ssh_argv("true")[:2] == ["nsenter", f"--net=/run/netns/{fake_host.netns}"]
        assert c["node1"].mux_proc is not None and c["node1"].mux_proc.poll() is None
        assert c["node1"].mux_proc.pid in pids_in_netns(fake_host.netns)

        assert _node_connects(c["node1"], c["node2"].address) == 0
        assert _node_connects(c["node3"], c["node1"].address) == 0

        # A minimal SLURM cluster over SSH: controller on node1, slurmd on node2 and node3, one munge key.
        key = os.urandom(1024)
        for node in c.nodes:
            node.put_file("/etc/munge/munge.key", key, mode=0o400, owner="munge")
            node.put_file("/etc/slurm/slurm.conf", SLURM_CONF)
        c.ssh_all(
            "set -e; mkdir -p /run/munge /var/log/slurm /var/lib/slurm/slurmd; chown munge: /run/munge; "
            "runuser -u munge -- /usr/sbin/munged"
        )
        ctl = c["node1"]
        ctl.ssh("slurmctld")
        for name in ("node2", "node3"):
            c[name].ssh("slurmd")
        deadline = time.monotonic() + 30
        state = ""
        while time.monotonic() < deadline:
            state = ctl.ssh("sinfo -h -o '%T %D'", check=False).stdout.strip()
            if state == "idle 2":
                break
            time.sleep(0.2)
        assert state == "idle 2", f"sinfo: {state!r}\n{ctl.ssh('tail -n 30 /var/log/slurm/slurmctld.log').stdout}"
        out = ctl.ssh("srun -N2 sh -c 'echo $SLURMD_NODENAME'", timeout=60).stdout
        assert sorted(out.split()) == ["node2", "node3"]

        # The firewall is still there, and not one node<->node packet went through it.
        assert "-P FORWARD DROP" in fake_host.nsrun(["iptables", "-S", "FORWARD"]).stdout
        assert fake_host.forwarded(c.subnet) == 0
    assert not Path("/run/netns", c.switch_netns).exists(), "the switch namespace survived close()"
    assert f" {c.uplink}@" not in fake_host.links(), "the uplink survived close()"
    assert time.monotonic() - started < 60


# --- teardown proof ----------------------------------------------------------------------------------------


def test_dockerd_stops_by_pid_and_the_host_is_untouched(fake_host: FakeHost, host_before: dict[str, object]) -> None:
    assert fake_host.dockerd_pid is not None
    dockerd, containerd = fake_host.dockerd_pid, list(fake_host.containerd)
    assert fake_host.stop_dockerd() == []
    assert not proc_alive(dockerd), "dockerd survived"
    assert not any(proc_alive(p) for p in containerd), "containerd survived"
    assert pids_in_netns(fake_host.netns) == [], "something still runs in the fake host"
    assert _host_state() == host_before, "the real host's firewall, sysctls or docker paths changed"
