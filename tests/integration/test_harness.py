"""Tests of the integration harness itself. Run as root:

    /work/main/.venv/bin/pytest tests/integration/test_harness.py

They fail (never skip) when a tool is missing. The first run builds the rootfs cache (about a minute).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.harness import (
    Cluster,
    HarnessError,
    NodeCommandError,
    check_slurm_conf,
    cleanup_stale,
    ensure_rootfs,
    require_tools,
)
from tests.integration.harness.fixtures import cluster_fixture, harness_preflight  # noqa: F401 (fixture)
from tests.integration.harness.nodes import _sigint_deferred, pids_in_netns
from tests.integration.harness.rootfs import host_mirror
from tests.integration.harness.slurmctld_check import expand_hostlist, parse_slurm_conf

REPO = Path(__file__).resolve().parents[2]

cluster = cluster_fixture(3)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("harness_preflight")]


def _host_links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout


@dataclass
class Snapshot:
    """What a running cluster has on the host, recorded so its absence can be checked after exit."""

    bridge: str = ""
    uplink: str = ""
    veths: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    workdir: str = ""

    @classmethod
    def of(cls, c: Cluster) -> Snapshot:
        assert c.switch_netns is not None and c.uplink is not None
        return cls(
            bridge=c.bridge,
            uplink=c.uplink,
            veths=[n.veth for n in c.nodes],
            netns=[n.netns for n in c.nodes] + [c.switch_netns],
            pids=[p for n in c.nodes for p in n.host_pids()],
            workdir=str(c.workdir),
        )

    def assert_gone(self) -> None:
        links = _host_links()
        for name in [self.bridge, self.uplink, *self.veths]:
            assert f" {name}:" not in links and f" {name}@" not in links, f"link {name} survived"
        for ns in self.netns:
            assert not Path("/run/netns", ns).exists(), f"netns {ns} survived"
        for pid in self.pids:
            assert not _alive(pid), f"process {pid} survived"
        assert self.workdir and not Path(self.workdir).exists(), "workdir survived"
        assert self.workdir not in Path("/proc/self/mountinfo").read_text(), "a mount survived"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- rootfs -------------------------------------------------------------------------------------------


def test_rootfs_is_cached_and_has_no_shared_secrets() -> None:
    root = ensure_rootfs()
    started = time.monotonic()
    assert ensure_rootfs() == root
    assert time.monotonic() - started < 0.5, "a warm ensure_rootfs must not rebuild"
    for binary in ("usr/sbin/sshd", "usr/sbin/slurmctld", "usr/sbin/slurmd", "usr/sbin/slurmdbd",
                   "usr/sbin/munged", "usr/sbin/mariadbd", "usr/bin/python3", "usr/bin/sudo"):  # fmt: skip
        assert (root / binary).exists(), binary
    assert not list((root / "etc/ssh").glob("ssh_host_*")), "host keys must be per node"
    assert not (root / "etc/munge/munge.key").exists(), "the munge key must come from provisioning"
    assert not str(root).startswith("/work/main"), "the cache lives outside the repository"


def test_mirror_comes_from_host_apt_sources() -> None:
    mirror = host_mirror()
    sources = "".join(
        p.read_text()
        for p in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
        if p.exists()
    )
    assert mirror.startswith("http") and mirror in sources


def test_missing_tool_fails_loudly() -> None:
    with pytest.raises(HarnessError, match="hsci-no-such-tool"):
        require_tools(["ip", "hsci-no-such-tool"])


# --- nodes --------------------------------------------------------------------------------------------


def test_nodes_have_names_addresses_and_hosts(cluster: Cluster) -> None:
    assert [n.name for n in cluster.nodes] == ["node1", "node2", "node3"]
    assert cluster.private_key_path.exists()
    fingerprints = set()
    for node in cluster.nodes:
        out = node.ssh("hostname; hostname -I; cat /etc/hosts; ssh-keygen -lf /etc/ssh/ssh_host_*.pub")
        lines = out.stdout.splitlines()
        assert lines[0] == node.name
        assert lines[1].split() == [node.address]
        for other in cluster.nodes:
            assert f"{other.address} {other.name}" in lines
        fingerprints.add(lines[-1].split()[1])
        # sshd is the pid namespace's init: the node sees none of the others' processes.
        assert "sshd" in node.ssh("cat /proc/1/cmdline").stdout
        assert node.ssh("ps -e --no-headers | wc -l").stdout.strip() != ""
    assert len(fingerprints) == 3, "every node needs its own host key"
    # Nodes reach each other by name (the bridge) and the host by its address.
    cluster["node1"].ssh("timeout 5 bash -c 'echo > /dev/tcp/node3/22'")
    # The host answers over the uplink: a connection, or a refusal (rc 1), but never a timeout (rc 124).
    cluster["node3"].ssh(f"timeout 5 bash -c 'echo > /dev/tcp/{cluster.host_address}/22' || test $? = 1")
    assert cluster.host_address == cluster.nodes[0].address.rsplit(".", 1)[0] + ".1"


def test_bridge_lives_in_a_switch_namespace(cluster: Cluster) -> None:
    """The host holds one uplink with .1; the bridge and the nodes' veths are in the switch namespace."""
    assert cluster.switch_netns and cluster.uplink
    assert cluster.switch_netns.startswith(f"{cluster.prefix}{cluster.run_id}-")
    host = _host_links()
    for name in [cluster.bridge, *(n.veth for n in cluster.nodes)]:
        assert f" {name}:" not in host and f" {name}@" not in host, f"{name} is in the host namespace"
    addr = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", cluster.uplink], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    assert f"inet {cluster.host_address}/24" in addr
    switch = subprocess.run(["ip", "-n", cluster.switch_netns, "-o", "link", "show"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    ports = {
        line.split(":")[1].strip().split("@")[0] for line in switch.splitlines() if f"master {cluster.bridge}" in line
    }
    assert ports == {"uplink", *(n.veth for n in cluster.nodes)}


def test_writes_are_private_to_a_node(cluster: Cluster) -> None:
    node1, node2 = cluster["node1"], cluster["node2"]
    node1.put_file("/root/hsci-marker", "only on node1\n", mode=0o600)
    assert node1.read_file("/root/hsci-marker") == "only on node1\n"
    assert node2.ssh("test -e /root/hsci-marker", check=False).returncode == 1
    assert not (cluster.rootfs / "root/hsci-marker").exists(), "the shared lower layer must stay untouched"
    assert (node1.upper / "root/hsci-marker").exists()


def test_ssh_errors_carry_output(cluster: Cluster) -> None:
    node = cluster["node2"]
    assert node.ssh("echo out; echo err >&2; exit 3", check=False).returncode == 3
    with pytest.raises(NodeCommandError) as info:
        node.ssh("echo visible-in-message >&2; exit 4")
    assert info.value.returncode == 4
    assert "visible-in-message" in str(info.value) and "node2" in str(info.value)
    assert node.ssh(["printf", "%s", "a b'c"]).stdout == "a b'c"
    assert node.nsexec(["hostname"]).stdout.strip() == "node2"


SLURM_CONF = textwrap.dedent(
    """\
    ClusterName=hscitest
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


def test_tiny_slurm_cluster_runs_jobs(cluster: Cluster) -> None:
    """Stand-in for the project's provisioner: munge key + slurm.conf over SSH, daemons per node."""
    assert check_slurm_conf(SLURM_CONF).ok, "the validator must accept the conf the cluster runs"
    key = os.urandom(1024)
    for node in cluster.nodes:
        node.put_file("/etc/munge/munge.key", key, mode=0o400, owner="munge")
        node.put_file("/etc/slurm/slurm.conf", SLURM_CONF)
    cluster.ssh_all(
        "set -e; mkdir -p /run/munge /var/log/slurm /var/lib/slurm/slurmd; chown munge: /run/munge; "
        "runuser -u munge -- /usr/sbin/munged"
    )
    # Separate filesystems, separate munged, one shared key: credentials cross nodes.
    cred = cluster["node1"].ssh("munge -n").stdout
    assert "Success" in cluster["node3"].ssh("unmunge", input=cred).stdout
    ctl = cluster["node1"]
    ctl.ssh("slurmctld")
    for name in ("node2", "node3"):
        cluster[name].ssh("slurmd")
    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline:
        state = ctl.ssh("sinfo -h -o '%T %D'", check=False).stdout.strip()
        if state == "idle 2":
            break
        time.sleep(0.2)
    assert state == "idle 2", f"sinfo: {state!r}\n{ctl.ssh('tail -n 30 /var/log/slurm/slurmctld.log').stdout}"
    out = ctl.ssh("srun -N2 hostname", timeout=60).stdout
    assert sorted(out.split()) == ["node2", "node3"]


# --- teardown and robustness ----------------------------------------------------------------------------


def test_context_exit_leaves_nothing_behind() -> None:
    with Cluster(2, names=["tda", "tdb"]) as c:
        # Daemons that detach from the SSH session must die with the node too.
        c.ssh_all("runuser -u munge -- true; (setsid sleep 1000 >/dev/null 2>&1 &); echo started")
        c["tda"].put_file("/etc/munge/munge.key", os.urandom(1024), mode=0o400, owner="munge")
        c["tda"].ssh("mkdir -p /run/munge && chown munge: /run/munge && runuser -u munge -- /usr/sbin/munged")
        snap = Snapshot.of(c)
        assert len(snap.pids) >= 5
        assert all(Path("/run/netns", ns).exists() for ns in snap.netns)
    snap.assert_gone()


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_teardown_runs_on_failure_and_interrupt(exc: BaseException) -> None:
    snap = Snapshot()
    with pytest.raises(type(exc)), Cluster(1) as c:
        snap = Snapshot.of(c)
        raise exc
    snap.assert_gone()


def test_sigint_during_teardown_is_deferred() -> None:
    reached_end = False
    with pytest.raises(KeyboardInterrupt), _sigint_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        reached_end = True
    assert reached_end


def test_stale_run_is_cleaned_but_live_runs_are_not() -> None:
    # A harness process that dies by SIGKILL cannot tear down: its nodes must die with it (pdeathsig)
    # and the next run must remove its network debris, while another live run stays untouched.
    child = textwrap.dedent(
        """\
        import json, os, signal, sys
        from tests.integration.harness import Cluster
        c = Cluster(1, prefix="hscz").start()
        print(json.dumps({"netns": c.nodes[0].netns, "switch": c.switch_netns, "uplink": c.uplink,
                          "bridge": c.bridge, "workdir": str(c.workdir), "pids": c.nodes[0].host_pids()}),
              flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    dead = json.loads(proc.stdout)
    assert Path("/run/netns", dead["netns"]).exists(), "expected debris from the killed run"
    assert Path("/run/netns", dead["switch"]).exists() and f" {dead['uplink']}@" in _host_links()
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{p}").exists() for p in dead["pids"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{p}").exists() for p in dead["pids"]), "nodes outlived their harness"

    with Cluster(1, prefix="hscz") as live:  # starting a run cleans stale debris of its prefix
        assert not Path("/run/netns", dead["netns"]).exists()
        assert not Path("/run/netns", dead["switch"]).exists(), "the switch namespace survived"
        assert f" {dead['bridge']}:" not in _host_links()
        assert f" {dead['uplink']}@" not in _host_links(), "the uplink survived"
        assert not Path(dead["workdir"]).exists()
        assert cleanup_stale("hscz") == [], "a live run is never stale"
        live.nodes[0].ssh("true")
        assert pids_in_netns(live.nodes[0].netns)


def test_host_netns_run_is_closed_and_cleaned_when_stale() -> None:
    # With host_netns the uplink lives in that namespace: close() removes it there, and so does the
    # stale cleanup of a run killed without teardown (from its registry record).
    host_ns = f"hsch-{os.getpid()}"  # not of the harness's <prefix><6 hex>- shape: never taken for debris
    subprocess.run(["ip", "netns", "add", host_ns], check=True)
    try:

        def uplinks() -> str:
            return subprocess.run(
                ["ip", "-n", host_ns, "-o", "link", "show"], capture_output=True, text=True, check=True
            ).stdout

        with Cluster(1, prefix="hscy", host_netns=host_ns) as c:
            assert c.uplink and c.switch_netns
            assert f" {c.uplink}@" in uplinks() and f" {c.uplink}" not in _host_links()
            c.nodes[0].ssh("true")
            snap = Snapshot.of(c)
        assert f" {c.uplink}@" not in uplinks(), "close() left the uplink in host_netns"
        snap.assert_gone()

        child = textwrap.dedent(
            f"""\
            import json, os, signal
            from tests.integration.harness import Cluster
            c = Cluster(1, prefix="hscy", host_netns={host_ns!r}).start()
            print(json.dumps({{"switch": c.switch_netns, "uplink": c.uplink, "netns": c.nodes[0].netns}}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        dead = json.loads(proc.stdout)
        assert f" {dead['uplink']}@" in uplinks() and Path("/run/netns", dead["switch"]).exists()
        removed = cleanup_stale("hscy")
        assert f"link {dead['uplink']} in netns {host_ns}" in removed, removed
        assert f"netns {dead['switch']}" in removed and f"netns {dead['netns']}" in removed, removed
        assert f" {dead['uplink']}@" not in uplinks()
        assert not Path("/run/netns", dead["switch"]).exists()
        assert Path("/run/netns", host_ns).exists(), "the host_netns is the caller's, never the harness's"
    finally:
        subprocess.run(["ip", "netns", "del", host_ns], check=False)


def test_two_clusters_run_side_by_side(tmp_path: Path) -> None:
    key = tmp_path / "extra"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    extra = (tmp_path / "extra.pub").read_text().strip()
    with Cluster(1) as a, Cluster(1, authorized_keys=[extra]) as b:
        assert a.subnet != b.subnet and a.bridge != b.bridge
        assert extra in b.nodes[0].read_file("/root/.ssh/authorized_keys")
        assert a.nodes[0].ssh("hostname -I").stdout.split() == [a.nodes[0].address]
        assert b.nodes[0].ssh("hostname -I").stdout.split() == [b.nodes[0].address]


# --- slurmctld as a validator ---------------------------------------------------------------------------

VALID_CONF = textwrap.dedent(
    """\
    ClusterName=valid
    SlurmctldHost=ctl01
    SlurmUser=slurm
    MailProg=/bin/true
    StateSaveLocation=/var/spool/hsci-validator-state
    SlurmctldLogFile=/var/log/hsci-validator.log  # comment
    ProctrackType=proctrack/linuxproc
    TaskPlugin=task/none
    SelectType=select/cons_tres
    SelectTypeParameters=CR_Core
    AccountingStorageType=accounting_storage/slurmdbd
    GresTypes=gpu
    NodeName=gpu[01-02] NodeHostname=host[1-2] CPUs=2 RealMemory=2000 Gres=gpu:h100:2
    PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
    """
)


def test_validator_accepts_a_valid_conf_and_writes_nothing_outside() -> None:
    watched = ("/var/spool/hsci-validator-state", "/var/log/hsci-validator.log", "/run/slurmctld.pid")
    before = {p: Path(p).exists() for p in watched}
    result = check_slurm_conf(
        VALID_CONF, {"gres.conf": "NodeName=gpu[01-02] Name=gpu Type=h100 File=/dev/nvidia[0-1]\n"}
    )
    assert result.ok, result.log
    assert "Running as primary controller" in result.log
    assert {p: Path(p).exists() for p in watched} == before, "the validator wrote outside its temp dir"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("MailProg=/bin/true", "MailProg=/bin/true\nFooBar=1"), "unrecognized key: FooBar"),
        (("CPUs=2", "CPUs=abc"), 'CPUs value "abc" is not a valid number'),
        (("Default=YES", "Default=MAYBE"), '"MAYBE" is not a valid option for "Default"'),
        (("select/cons_tres", "select/bogus"), "Can't find plugin for select/bogus"),
        (("Nodes=ALL", "Nodes=gpu[01-03]"), "Invalid node names in partition"),
        (("ClusterName=valid\n", ""), "ClusterName needs to be specified"),
        (("PartitionName=debug", "NodeName=gpu01 CPUs=2\nPartitionName=debug"), "Duplicated NodeName gpu01"),
    ],
    ids=["unknown-key", "bad-number", "bad-option", "bad-plugin", "undefined-node", "no-cluster", "dup-node"],
)
def test_validator_rejects_broken_confs(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in VALID_CONF
    started = time.monotonic()
    result = check_slurm_conf(VALID_CONF.replace(old, new))
    assert not result.ok
    assert expected in result.log, result.log
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "extra",
    ["SlurmctldDebug=quiet", "SlurmctldDebug=ERROR", "JobCompType=jobcomp/filetxt\nJobCompLoc=/var/log/x.log"],
)
def test_validator_sees_through_quiet_logs_and_its_own_redirects(extra: str) -> None:
    # Below info slurmctld never logs READY; a filetxt job log is redirected into the validator's temp dir,
    # which slurmctld (as SlurmUser) must be able to open.
    conf = VALID_CONF.replace("MailProg=/bin/true", f"MailProg=/bin/true\n{extra}")
    assert check_slurm_conf(conf).ok
    assert not check_slurm_conf(conf.replace("select/cons_tres", "select/bogus")).ok


def test_validator_never_touches_a_live_pid_file(tmp_path: Path) -> None:
    # slurmctld kills the pid named in an existing pid file and, in a pid namespace, writes 1 into it.
    victim = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = tmp_path / "slurmctld.pid"
        pid_file.write_text(f"{victim.pid}\n")
        conf = VALID_CONF.replace("MailProg=/bin/true", f"MailProg=/bin/true\nSlurmctldPidFile={pid_file}")
        assert check_slurm_conf(conf).ok
        assert victim.poll() is None, "the validator killed the process named in the pid file"
        assert pid_file.read_text() == f"{victim.pid}\n"
    finally:
        victim.kill()
        victim.wait()


def test_conf_parsing() -> None:
    expanded = ["gpu01", "gpu02", "gpu03", "cpu1", "cpu4", "login"]
    assert expand_hostlist("gpu[01-03],cpu[1,4],login") == expanded
    assert expand_hostlist("r[1-2]n[1-2]") == ["r1n1", "r1n2", "r2n1", "r2n2"]
    info = parse_slurm_conf(VALID_CONF + "SlurmctldHost=ctl02(10.0.0.2)\nNodeName=x NodeAddr=10.1.1.1\n")
    assert info.controllers == ["ctl01", "ctl02"] and info.controller_addrs == ["10.0.0.2"]
    assert info.node_names == ["gpu01", "gpu02", "x"] and info.node_hostnames == ["host1", "host2"]
    assert info.get("slurmctldlogfile") == "/var/log/hsci-validator.log"
    assert "10.1.1.1" not in info.host_names() and "host2" in info.host_names()
