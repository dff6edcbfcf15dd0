"""The namespaced harness does not depend on the host's firewall (issue 8, item 6).

A default dockerd sets the FORWARD policy of its network namespace to DROP. With
net.bridge.bridge-nf-call-iptables=1, frames bridged in that namespace traverse FORWARD and are dropped,
so a harness whose bridge sits in the host's namespace loses node<->node traffic ("nodes not responding").
Here a "fake host" network namespace runs a real dockerd with default iptables handling
(tests/integration/harness/dockerd.py) and plays the host (Cluster(host_netns=...)):

1. the fake host really has `-P FORWARD DROP` and bridge-nf-call-iptables=1;
2. negative control: the old topology (bridge in the host-side namespace) drops node1 -> node2 while the
   fake host still reaches both nodes over SSH;
3. the switch-namespace topology keeps node1 -> node2 working and runs a multi-node SLURM job.

Nothing here touches the real host's firewall or sysctls (the last test compares them, and the paths a
default dockerd would create, with how it found them); dockerd keeps its data, exec root, pid file,
socket and config in a temp dir and runs in a private mount namespace, so even the paths it insists on
(/run/docker, /opt/containerd, /etc/docker/key.json) never reach the host. Run as root; missing tools fail.
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, Node
from tests.integration.harness._util import proc_alive, proc_comm, run
from tests.integration.harness.dockerd import Dockerd, bridge_nf_call_iptables, fake_host_netns, host_state, nsrun
from tests.integration.harness.fixtures import harness_preflight  # noqa: F401 (fixture)
from tests.integration.harness.nodes import pids_in_netns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("harness_preflight")]

PREFIX = "hsfw"  # the clusters' prefix

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


@dataclass
class FakeHost:
    """A named netns with a real dockerd (default iptables handling) that plays the host."""

    netns: str
    dockerd: Dockerd

    def nsrun(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return nsrun(self.netns, argv, check=check)

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


@pytest.fixture(scope="module")
def host_before() -> dict[str, object]:
    return host_state()


@pytest.fixture(scope="module")
def fake_host(host_before: dict[str, object]) -> Iterator[FakeHost]:
    # Teardown (dockerd stopped by pid, its containerd gone, nothing left in the netns, netns and temp dir
    # removed) raises on any debris; fake_host_netns first sweeps what dead runs left.
    with fake_host_netns() as netns, Dockerd(netns) as dockerd:
        yield FakeHost(netns, dockerd)


def _node_connects(node_from: Node, address: str, seconds: int = 3) -> int:
    """rc of a TCP connect to address:22 from a node: 0 connected, 1 refused, 124 nothing came back."""
    proc = node_from.ssh(f"timeout {seconds} bash -c 'echo > /dev/tcp/{address}/22'", check=False)
    return int(proc.returncode)


# --- 1. the fake host has the firewall that breaks a bridged harness ---------------------------------------


def test_fake_host_runs_a_real_dockerd_with_default_iptables(fake_host: FakeHost) -> None:
    dockerd = fake_host.dockerd
    assert dockerd.pid is not None
    # The pid we hold is dockerd itself, and its pid file and data root are ours (the host's default
    # paths are checked by the last test).
    assert proc_comm(dockerd.pid) == "dockerd"
    assert dockerd.pidfile.read_text().strip() == str(dockerd.pid)
    info = dockerd.docker("info", "--format", "{{.DockerRootDir}} {{.ServerVersion}}").stdout.split()
    assert info[0] == str(dockerd.data_root), info
    # Its containerd is its child, in the fake host's netns, and keeps its files under our exec root.
    assert dockerd.containerd, f"no containerd child of dockerd {dockerd.pid}"
    for pid in dockerd.containerd:
        assert pid in pids_in_netns(fake_host.netns)
        assert str(dockerd.exec_root) in Path(f"/proc/{pid}/cmdline").read_text()

    # dockerd's default iptables handling, in the fake host only.
    assert dockerd.forward_policy() == "DROP"
    assert "-A FORWARD -j DOCKER-USER" in fake_host.nsrun(["iptables", "-S", "FORWARD"]).stdout
    assert "docker0" in fake_host.links()

    # br_netfilter's sysctls are per netns on this kernel (bridge_nf_call_iptables fails otherwise, without
    # writing anything); only then may it be enabled, and only inside the fake host.
    assert bridge_nf_call_iptables(fake_host.netns, enable=True) == "1"


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
        assert fake_host.dockerd.forward_policy() == "DROP"
        assert fake_host.forwarded(c.subnet) == 0
    assert not Path("/run/netns", c.switch_netns).exists(), "the switch namespace survived close()"
    assert f" {c.uplink}@" not in fake_host.links(), "the uplink survived close()"
    assert time.monotonic() - started < 60


# --- teardown proof ----------------------------------------------------------------------------------------


def test_dockerd_stops_by_pid_and_the_host_is_untouched(fake_host: FakeHost, host_before: dict[str, object]) -> None:
    dockerd = fake_host.dockerd
    assert dockerd.pid is not None
    pid, containerd = dockerd.pid, list(dockerd.containerd)
    assert dockerd.stop() == []
    assert not proc_alive(pid), "dockerd survived"
    assert not any(proc_alive(p) for p in containerd), "containerd survived"
    assert pids_in_netns(fake_host.netns) == [], "something still runs in the fake host"
    assert host_state() == host_before, "the real host's firewall, sysctls or docker paths changed"
