"""`pulumi up` for real: the engine builds a working cluster of TCG VMs through the provider doubles.

One test, in the order a user lives it, against a namespaced libvirtd (tests/integration/libvirt_harness.py)
whose network namespace also runs a default dockerd (FORWARD policy DROP, as on a workstation with Docker):

1. `pulumi up` of a small stack (a controller and two compute nodes of one vCPU and 1300 MiB, TCG, direct
   kernel boot from the cached image of tests/vm/image.py) with the built CLI, the language host and the
   provider doubles (e2e/doubles), at the engine's default parallelism. The CLI runs inside the libvirtd's
   network namespace (nsenter --net), where the NAT bridge lives, so the command double's SSH connections
   reach the VMs; every connection pins the host key cloud-init gave the VM. Nothing orders the Commands
   but the program's own dependencies: a missing depends_on makes a step run too early and fail here.
2. The canary from the stack outputs, and the cluster checked over SSH (systemd, cgroup v2, network-config,
   the state disk by serial, sinfo/srun, guest traffic across the dockerd firewall).
3. `pulumi preview --expect-no-changes`.
4. A SLURM-only change: only Commands change, slurmctld reconfigures without a restart.
5. A replace-class change to one compute node (its memory): the engine deletes the node's membership
   Command first (`membership.sh leave` drains it), deletes the Domain before it creates the new one
   (delete_before_replace), and the node comes back idle (`membership.sh join` resumes it).
6. `pulumi destroy`, refused while the data volumes and the pool are protected; unprotected on purpose, it
   removes everything but them (retain_on_delete), and the test removes those itself.

The wall time of every step is printed (and written to vm-timings.json in the test's tmp dir).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from tests.engine import Stack, scratch_stack
from tests.integration.harness import require_tools as require_harness_tools
from tests.integration.harness.dockerd import DOCKER_TOOLS, IP_FORWARD, Dockerd, bridge_nf_call_iptables, netns_sysctl
from tests.integration.libvirt_harness import CLEAN_ENV, Libvirtd, require_tools
from tests.vm.image import VmImage, ensure_image

pytestmark = pytest.mark.vm

STACK = "vmt"
COMPUTE = ["big-01", "cpu-01"]
STORAGE = "storage-01"
NAMES = ["controller", STORAGE, *COMPUTE]
SUBNET = "10.123.0"
HOSTS = {"controller": 10, STORAGE: 20, "cpu-01": 100, "big-01": 101}
ADDRESSES = {name: f"{SUBNET}.{host}" for name, host in HOSTS.items()}
INTERCONNECT = {name: f"10.78.0.{host}" for name, host in HOSTS.items()}
SHARED = "/shared"
WORK = f"{SHARED}/vm-tier"  # jobs run as root write under a directory of their own (render/scripts/canary.sh)
VM_TOOLS = ("genisoimage", "mkisofs", "xsltproc", "ssh", "ssh-keygen", "qemu-img", "qemu-system-x86_64")
DOMAIN = "libvirt:index/domain:Domain"
COMMAND = "command:remote:Command"
# Commands retry SSH while the VMs boot (connection dialErrorLimit, components/remote.py); under TCG on
# two busy cores cloud-init takes 2-4 minutes, so give them 10.
CONNECT_TIMEOUT_S = 600
UP_TIMEOUT_S = 3600


def stack_yaml(uri: str, image: VmImage, public_key: str) -> str:
    host = {
        "name": "hv",
        "uri": uri,
        "domain_type": "qemu",  # TCG: no KVM here (sandbox.md)
        # This machine as it is: 2 CPUs, so 3 one-vCPU VMs float (pinning off, overcommitted).
        "cpu": {"sockets": 1, "cores_per_socket": 2, "threads_per_core": 1},
        "memory_mib": 16384,
        "reserve": {"cpus": "0", "memory_mib": 2048},
        "pinning": False,
        "direct_boot": {"kernel": str(image.kernel), "initrd": str(image.initrd), "cmdline": image.cmdline},
    }
    node = {"vcpus": 1, "memory_mib": 1300, "disk_gib": 8}
    cluster = {
        "name": STACK,
        "hosts": [host],
        "images": {"debian-12": {"source": str(image.qcow2), "sha256": image.sha256}},
        "networks": {"management": {"cidr": f"{SUBNET}.0/24"}},
        "ssh": {"user": "root", "public_keys": [public_key], "connect_timeout_s": CONNECT_TIMEOUT_S},
        "controller": {**node, "state_disk_gib": 1},
        # Two groups of one, so that a replace-class change can touch one compute node.
        "compute": [{"name": "cpu", "count": 1, **node}, {"name": "big", "count": 1, **node}],
        # NFS from one storage node's protected data volume, mounted at /shared on the controller and on
        # every compute node (the kernel here has no nfsd, so only VMs can prove it).
        "storage": {**node, "count": 1, "memory_mib": 1024, "data_disks_gib": [2], "backend": "nfs"},
        # Monitoring under systemd, with short test-only intervals.
        "monitoring": {
            "enabled": True,
            "scrape_interval_s": 5,
            "evaluation_interval_s": 5,
            "alerts": {"pending_s": 5},
        },
    }
    return yaml.safe_dump({"config": {"hyperscaler:cluster": cluster}})


# --- events -----------------------------------------------------------------------------------------


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Step:
    urn: str
    op: str
    started: int  # event sequence numbers
    finished: int
    started_at: float
    finished_at: float

    @property
    def type(self) -> str:
        return self.urn.split("::")[2].split("$")[-1]

    @property
    def name(self) -> str:
        return self.urn.split("::")[-1]


def steps_of(events: list[dict[str, Any]]) -> list[Step]:
    """Each resource step the engine ran: when it started and when it finished."""
    open_steps: dict[tuple[str, str], tuple[int, float]] = {}
    done: list[Step] = []
    for e in events:
        for kind in ("resourcePreEvent", "resOutputsEvent", "resOpFailedEvent"):
            if kind not in e:
                continue
            meta = e[kind]["metadata"]
            key = (meta["urn"], meta["op"])
            if kind == "resourcePreEvent":
                open_steps[key] = (e["sequence"], e["timestamp"])
            elif key in open_steps:
                seq, at = open_steps.pop(key)
                done.append(Step(meta["urn"], meta["op"], seq, e["sequence"], at, e["timestamp"]))
    return done


# --- the cluster ------------------------------------------------------------------------------------


@dataclass
class Tier:
    lv: Libvirtd
    dockerd: Dockerd
    stack: Stack
    tmp: Path
    key: Path
    timings: dict[str, float] = field(default_factory=dict)
    serial_logs: dict[str, Path] = field(default_factory=dict)

    @property
    def known_hosts(self) -> Path:
        return self.tmp / "known_hosts"

    def ssh_argv(self, host: str, command: str) -> list[str]:
        # The NAT bridge exists only in the libvirtd's network namespace.
        return [
            "nsenter", f"--net=/run/netns/{self.lv.netns}",
            "ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "HostKeyAlgorithms=ssh-ed25519",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20",
            # One TCP+SSH handshake per host instead of one per command: TCG guests are slow at crypto.
            "-o", "ControlMaster=auto", "-o", f"ControlPath={self.tmp}/mux-%h", "-o", "ControlPersist=60",
            f"root@{host}", "--", command,
        ]  # fmt: skip

    def on(self, node: str, command: str) -> str:
        proc = subprocess.run(
            self.ssh_argv(ADDRESSES[node], command), capture_output=True, text=True, timeout=600, env=CLEAN_ENV
        )
        assert proc.returncode == 0, f"{node}: {command} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def end_ssh_masters(self) -> None:
        for node in NAMES:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(
                    ["ssh", "-o", f"ControlPath={self.tmp}/mux-%h", "-O", "exit", ADDRESSES[node]],
                    capture_output=True, timeout=10, env=CLEAN_ENV, check=False,
                )  # fmt: skip

    def virsh(self, *args: str) -> str:
        rc, out = self.lv.virsh(*args)
        assert rc == 0, f"virsh {' '.join(args)}: {out}"
        return out

    def domain_uuids(self) -> dict[str, str]:
        return {name: self.virsh("domuuid", name).strip() for name in self.virsh("list", "--all", "--name").split()}

    def timed(self, what: str, *args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        try:
            return self.stack.pulumi(*args, timeout=timeout)
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{self.node_states()}\n{self.serial_tails()}") from None
        finally:
            self.timings[what] = round(time.monotonic() - started, 1)

    def node_states(self) -> str:
        """For a failed step: what each node's services, mounts and shared directory look like. The host
        keys may not be known yet (a failed first `up` exports none), so this alone does not pin them;
        it only reads."""
        probe = (
            "systemctl --failed --no-legend; findmnt -t nfs4,nfs,ext4,xfs -n; ls -ld /shared /srv/hyperscaler/*/* "
            "2>&1; exportfs -v 2>&1; id nobody; tail -n 5 /var/log/slurm/slurmd.log 2>/dev/null"
        )
        out = []
        for node in NAMES:
            argv = [
                "nsenter", f"--net=/run/netns/{self.lv.netns}", "ssh", "-i", str(self.key), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=20", f"root@{ADDRESSES[node]}", "--", probe,
            ]  # fmt: skip
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=CLEAN_ENV)
                out.append(f"--- {node} ---\n{proc.stdout}{proc.stderr}")
            except subprocess.SubprocessError as err:
                out.append(f"--- {node}: {err} ---")
        return "\n".join(out)

    def up(self, what: str) -> list[Step]:
        log = self.tmp / f"events-{what}.jsonl"
        self.timed(what, "up", "--yes", "--event-log", str(log))
        return steps_of(read_events(log))

    def serial_tails(self) -> str:
        out = []
        for name, log in sorted(self.serial_logs.items()):
            text = log.read_text(errors="replace")[-3000:] if log.exists() else "(empty)"
            out.append(f"--- serial console of {name} ---\n{text}")
        return "\n".join(out)


@contextlib.contextmanager
def serial_consoles(lv: Libvirtd, tmp: Path, logs: dict[str, Path]) -> Iterator[None]:
    """Copy every running domain's serial console (its pty) into a log, for diagnosis: the doubles start
    domains as the engine asks, so a poller picks them up as they appear."""
    stop = threading.Event()
    attached: set[str] = set()

    def pump(pty: str, log: Path) -> None:
        try:
            fd = os.open(pty, os.O_RDONLY | os.O_NOCTTY)
        except OSError:
            return
        with open(log, "ab") as out:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the pty goes away with the domain
                    break
                if not chunk:
                    break
                out.write(chunk)
                out.flush()
        os.close(fd)

    def poll() -> None:
        while not stop.wait(2):
            rc, out = lv.virsh("list", "--uuid")
            for uuid in out.split() if rc == 0 else ():
                if uuid in attached:
                    continue
                rc, xml = lv.virsh("dumpxml", uuid)
                if rc != 0:
                    continue
                root = ElementTree.fromstring(xml)
                source = root.find("devices/console/source")
                if source is None or not source.get("path"):
                    continue
                attached.add(uuid)
                name = root.findtext("name") or uuid
                log = tmp / f"serial-{name}-{uuid[:8]}.log"
                logs[name] = log
                threading.Thread(target=pump, args=(source.get("path"), log), daemon=True).start()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield
    finally:
        stop.set()
        poller.join(timeout=10)


@contextlib.contextmanager
def default_dockerd(netns: str) -> Iterator[Dockerd]:
    """A default dockerd in the namespace that plays the VMs' host, started before any libvirt network.

    The order is a workstation's: docker.service comes up at boot, before anyone defines or starts a
    libvirt network. It is also the order that matters: dockerd 20.10 sets `-P FORWARD DROP` only when it
    is the one turning ip_forward on, and libvirt's NAT network turns it on, so a dockerd started after the
    networks leaves the policy ACCEPT (checked: a netns with ip_forward=1 keeps ACCEPT). libvirt then
    inserts its LIBVIRT_* chains at the top of FORWARD, above docker's, when it starts a network.
    """
    # A fresh netns inherits the host's IPv4 settings; if the host forwards, put this namespace (never
    # the host) back to a boot-time 0 so that dockerd sets the DROP policy it sets at boot.
    if netns_sysctl(netns, IP_FORWARD) != "0":
        netns_sysctl(netns, IP_FORWARD, "0")
    with Dockerd(netns) as dockerd:
        assert dockerd.forward_policy() == "DROP", dockerd.nsrun(["iptables", "-S", "FORWARD"]).stdout
        # Bridged frames traverse iptables only with bridge-nf-call-iptables=1 (per netns on this kernel;
        # bridge_nf_call_iptables raises otherwise). A new netns starts with 1; should it be 0, the DROP
        # policy would never see guest<->guest frames and this tier would prove nothing, so it is set to
        # 1, inside this namespace only, never on the host.
        assert bridge_nf_call_iptables(netns, enable=True) == "1"
        yield dockerd


def machine_cgroups() -> set[Path]:
    return {p for p in Path("/sys/fs/cgroup").glob("*/machine*") if p.is_dir()}


# --- checks -----------------------------------------------------------------------------------------


def check_canary(outputs: dict[str, Any]) -> dict[str, Any]:
    canary = outputs["canary"]
    assert isinstance(canary, dict) and canary.get("nodes") == " ".join(COMPUTE), canary
    assert canary["busy"] == "" and canary["first_job_seconds"] >= 0, canary
    assert outputs["time_to_first_job_seconds"] == canary["controller_uptime_seconds"] > 0, outputs
    # A job on one node wrote a file on the shared file system, a job on another read it back.
    shared = canary["shared"]
    assert shared["written_on"] != shared["read_on"] and {shared["written_on"], shared["read_on"]} == set(COMPUTE)
    assert shared["seconds"] >= 0, shared
    return canary


def check_host_keys_pinned(tier: Tier, known_hosts: str) -> None:
    """Every Command's connection pins the host key of the VM it reaches, the one in known_hosts."""
    keys = {}
    for line in known_hosts.splitlines():
        names, key = line.split(" ", 1)
        for name in names.split(","):
            keys[name] = key
    state = json.loads(tier.stack.pulumi("stack", "export", "--show-secrets").stdout)
    commands = [r for r in state["deployment"]["resources"] if r["type"] == COMMAND]
    assert commands
    for r in commands:
        connection = r["inputs"]["connection"]
        if "plaintext" in connection:  # `stack export --show-secrets`: {"<secret sig>": ..., "plaintext": JSON}
            connection = json.loads(connection["plaintext"])
        assert connection.get("hostKey") == keys[connection["host"]], r["urn"]


def check_the_cluster_runs(tier: Tier) -> None:
    for node in NAMES:
        assert tier.on(node, "hostname").strip() == node
        assert tier.on(node, "cat /proc/1/comm").strip() == "systemd"
        assert tier.on(node, "stat -fc %T /sys/fs/cgroup").strip() == "cgroup2fs"
        assert f"{ADDRESSES[node]}/24" in tier.on(node, "ip -br -4 addr show dev mgmt0")
        assert f"{INTERCONNECT[node]}/24" in tier.on(node, "ip -br -4 addr show dev hpc0")
        assert f"default via {SUBNET}.1 dev mgmt0" in tier.on(node, "ip route show default")
    assert tier.on("controller", "systemctl is-active munge mariadb slurmdbd slurmctld").split() == ["active"] * 4
    for node in COMPUTE:
        assert tier.on(node, "systemctl is-active munge slurmd").split() == ["active"] * 2
    assert "CgroupPlugin=cgroup/v2" in tier.on("controller", "cat /etc/slurm/cgroup.conf")
    assert tier.on("controller", "readlink -f /dev/disk/by-id/virtio-hs-state").strip() == "/dev/vdb"
    state = tier.on("controller", "ls /var/lib/hyperscaler/state").split()
    assert state == ["alertmanager", "lost+found", "mysql", "prometheus", "slurmctld"], state
    assert idle_nodes(tier) == COMPUTE
    assert tier.on("controller", "srun -N2 hostname | sort").split() == COMPUTE
    # TCG guests get the emulated `maximum` CPU and no pinning: the program's output, unchanged, starts.
    for name in NAMES:
        xml = tier.virsh("dumpxml", f"{STACK}-{name}")
        assert "mode='maximum'" in xml and "<cputune>" not in xml, name


def check_shared_storage(tier: Tier) -> None:
    """The storage node exports its data volume (found by serial, mounted under systemd) over NFS; the
    controller and every compute node mount it at /shared, and one node sees what another wrote."""
    assert tier.on(STORAGE, "systemctl is-active nfs-server").strip() == "active"
    data = tier.on(STORAGE, "readlink -f /dev/disk/by-id/virtio-hs-data-1").strip()
    export = tier.on(STORAGE, "exportfs -v")
    mounted = tier.on(STORAGE, "findmnt -n -o SOURCE --target $(exportfs | awk 'NR==1{print $1}')").strip()
    assert mounted == data and data.startswith("/dev/vd"), (data, mounted, export)
    for node in ["controller", *COMPUTE]:
        fstype, source = tier.on(node, f"findmnt -n -o FSTYPE,SOURCE {SHARED}").split()
        assert fstype.startswith("nfs") and source.startswith(f"{ADDRESSES[STORAGE]}:"), (node, fstype, source)
    token = f"written-on-cpu-01-{time.time_ns()}"
    tier.on("controller", f"srun -N1 -w cpu-01 sh -c 'mkdir -p {WORK} && echo {token} > {WORK}/token'")
    assert tier.on("controller", f"srun -N1 -w big-01 cat {WORK}/token").strip() == token


def check_monitoring(tier: Tier) -> None:
    """Debian's units with the steps' options and drop-ins, the collector on its timer, every target up."""
    active = tier.on("controller", "systemctl is-active prometheus prometheus-alertmanager slurm-metrics.timer")
    assert active.split() == ["active"] * 3
    for node in NAMES:
        assert tier.on(node, "systemctl is-active prometheus-node-exporter").strip() == "active"
    assert "RequiresMountsFor=/var/lib/hyperscaler/state" in tier.on("controller", "systemctl cat prometheus")
    query = (
        "python3 -c 'import json, urllib.request; "
        'targets = json.load(urllib.request.urlopen("http://127.0.0.1:9090/api/v1/targets"))["data"]["activeTargets"]; '
        'print(" ".join(sorted(t["labels"].get("node", t["labels"]["job"]) + "=" + t["health"] for t in targets)))\''
    )
    wanted = sorted(f"{name}=up" for name in [*NAMES, "alertmanager", "prometheus"])
    deadline = time.monotonic() + 180
    while (up := tier.on("controller", query).split()) != wanted:
        assert time.monotonic() < deadline, up
        time.sleep(5)
    # The timer, not only the step, runs the SLURM collector: its textfile is rewritten.
    prom = "/var/lib/prometheus/node-exporter/slurm.prom"
    first = tier.on("controller", f"stat -c %Y {prom}")
    deadline = time.monotonic() + 120
    while tier.on("controller", f"stat -c %Y {prom}") == first:
        assert time.monotonic() < deadline, "slurm-metrics.timer never ran the collector"
        time.sleep(2)
    assert "slurm_up 1" in tier.on("controller", f"cat {prom}")
    # node-exporter's systemd collector sees the NFS server stop, and SharedStorageServiceDown fires.
    alerts = (
        "python3 -c 'import json, urllib.request; "
        'alerts = json.load(urllib.request.urlopen("http://127.0.0.1:9090/api/v1/alerts"))["data"]["alerts"]; '
        'print(" ".join(sorted(a["labels"]["alertname"] + "@" + a["labels"].get("node", "") + "=" + a["state"] '
        "for a in alerts)))'"
    )
    assert "SharedStorageServiceDown" not in tier.on("controller", alerts)
    tier.on(STORAGE, "systemctl stop nfs-server")
    try:
        deadline = time.monotonic() + 120
        while f"SharedStorageServiceDown@{STORAGE}=firing" not in (firing := tier.on("controller", alerts)).split():
            assert time.monotonic() < deadline, firing
            time.sleep(3)
    finally:
        tier.on(STORAGE, "systemctl start nfs-server")


def idle_nodes(tier: Tier) -> list[str]:
    out = tier.on("controller", "sinfo -h -N -o '%N %t' | sort -u")
    return [line.split()[0] for line in out.splitlines() if line.split()[1] == "idle"]


def check_guest_traffic_crossed_the_dockerd_firewall(tier: Tier) -> None:
    """The VMs' host runs a default dockerd (FORWARD policy DROP) and guest<->guest frames on both
    libvirt bridges really go through that chain: libvirt's intra-bridge ACCEPT (LIBVIRT_FWX, inserted
    above docker's rules) is what lets them pass."""
    dockerd, netns = tier.dockerd, tier.lv.netns
    assert dockerd.proc is not None and dockerd.proc.poll() is None, "dockerd must run for the whole tier"
    assert dockerd.forward_policy() == "DROP"
    assert bridge_nf_call_iptables(netns) == "1"
    forward = dockerd.nsrun(["iptables", "-S", "FORWARD"]).stdout.splitlines()
    assert forward.index("-A FORWARD -j LIBVIRT_FWX") < forward.index("-A FORWARD -j DOCKER-USER"), forward
    bridges = {}
    for network in tier.virsh("net-list", "--name").split():
        element = ElementTree.fromstring(tier.virsh("net-dumpxml", network)).find("bridge")
        assert element is not None
        bridges[network] = element.get("name", "")

    def fwx_packets() -> dict[str, int]:
        out = dockerd.nsrun(["iptables", "-L", "LIBVIRT_FWX", "-n", "-v", "-x"]).stdout
        rows = [line.split() for line in out.splitlines()[2:]]  # pkts bytes target prot opt in out ...
        return {row[5]: int(row[0]) for row in rows if row[2] == "ACCEPT" and row[5] == row[6]}

    before = fwx_packets()
    assert set(bridges.values()) <= set(before), (bridges, before)
    tier.on("cpu-01", f"timeout 5 bash -c '</dev/tcp/{INTERCONNECT['big-01']}/22'")  # interconnect (isolated)
    tier.on("big-01", f"timeout 5 bash -c '</dev/tcp/{ADDRESSES['controller']}/22'")  # management (NAT)
    after = fwx_packets()
    for network, bridge in bridges.items():
        assert after[bridge] > before[bridge], f"{network} ({bridge}): guest<->guest frames skipped FORWARD"


def changed_steps(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(op, type, name) of every step of a preview that changes something."""
    out = []
    for s in plan["steps"]:
        if s["op"] == "same":
            continue
        urn = s["urn"]
        out.append((s["op"], urn.split("::")[2].split("$")[-1], urn.split("::")[-1]))
    return out


def edit_stack_file(tier: Tier, edit: Any) -> None:
    path = tier.stack.project / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(path.read_text())
    edit(doc["config"]["hyperscaler:cluster"])
    path.write_text(yaml.safe_dump(doc))


# --- the test ---------------------------------------------------------------------------------------


def test_pulumi_up_builds_changes_replaces_and_destroys_a_tcg_cluster(tmp_path: Path) -> None:
    require_tools()
    require_tools(VM_TOOLS)
    require_harness_tools(DOCKER_TOOLS)
    total = time.monotonic()
    image = ensure_image()
    cgroups_before = machine_cgroups()
    try:
        # The dockerd starts right after libvirtd, before any network or domain exists (default_dockerd
        # says why), and is stopped by its pid only after the guests and networks are gone.
        with Libvirtd() as lv, default_dockerd(lv.netns) as dockerd:
            stack = scratch_stack(tmp_path, STACK, "doubles", lambda public: stack_yaml(lv.uri, image, public))
            stack.netns = lv.netns
            stack.env["PULUMI_DEBUG_COMMANDS"] = "true"  # enables `up --event-log`
            tier = Tier(lv, dockerd, stack, tmp_path, tmp_path / "id_ed25519")
            tier.timings["image_build_s"] = round(image.build_seconds, 1)
            try:
                with serial_consoles(lv, tmp_path, tier.serial_logs):
                    run_the_tier(tier)
            finally:
                tier.end_ssh_masters()
                tier.timings["total_s"] = round(time.monotonic() - total, 1)
                print("\nVM tier timings: " + ", ".join(f"{k}={v}" for k, v in tier.timings.items()))
                (tmp_path / "vm-timings.json").write_text(json.dumps(tier.timings, indent=1) + "\n")
    finally:
        # Starting a domain makes libvirtd create the "machine" partition under every cgroup hierarchy of
        # the host, and it never removes it; remove the ones this test created (rmdir: only if empty).
        for path in sorted(machine_cgroups() - cgroups_before, reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()


def run_the_tier(tier: Tier) -> None:
    stack = tier.stack
    # 1. pulumi up, at the engine's default parallelism.
    steps = tier.up("up_s")
    canary_step = next(s for s in steps if s.name.endswith("-controller-canary"))
    first_domain = min(s.started_at for s in steps if s.type == DOMAIN)
    tier.timings["up_domains_to_canary_done_s"] = canary_step.finished_at - first_domain
    outputs = stack.outputs()
    tier.known_hosts.write_text(outputs["known_hosts"])

    # 2. The canary from the stack outputs, then the cluster itself.
    canary = check_canary(outputs)
    tier.timings["time_to_first_job_s (stack output)"] = outputs["time_to_first_job_seconds"]
    tier.timings["canary_first_job_s"] = canary["first_job_seconds"]
    check_host_keys_pinned(tier, outputs["known_hosts"])
    check_packages_came_with_the_image(tier)
    check_the_cluster_runs(tier)
    check_shared_storage(tier)
    check_monitoring(tier)
    check_guest_traffic_crossed_the_dockerd_firewall(tier)

    # 3. Nothing changed, nothing to do.
    tier.timed("preview_no_changes_s", "preview", "--expect-no-changes")

    # 4. A SLURM setting: only Commands change, slurmctld re-reads slurm.conf without a restart.
    slurmctld = tier.on("controller", "pgrep -x slurmctld").split()
    stack.pulumi("config", "set", "--path", "hyperscaler:cluster.slurm.options.SchedulerParameters", "bf_interval=60")
    changes = changed_steps(stack.preview_json())
    assert changes and {t for _, t, _ in changes} == {COMMAND}, changes
    domains = tier.domain_uuids()
    tier.up("slurm_change_up_s")
    assert tier.domain_uuids() == domains
    assert "bf_interval=60" in tier.on("controller", "scontrol show config | grep -i '^SchedulerParameters'")
    assert tier.on("controller", "pgrep -x slurmctld").split() == slurmctld, "slurmctld was restarted"
    assert idle_nodes(tier) == COMPUTE
    tier.timed("preview_after_slurm_change_s", "preview", "--expect-no-changes")

    # 5. A replace-class change to one compute node.
    edit_stack_file(tier, lambda c: c["compute"][1].update(memory_mib=1310))
    changes = changed_steps(stack.preview_json())
    replaced = {(t, n) for op, t, n in changes if op in ("replace", "create-replacement", "delete-replaced")}
    assert {n for t, n in replaced if t != COMMAND} == {f"{STACK}-big-01-domain"}, changes
    kept = f"kept-across-replace-{time.time_ns()}"
    tier.on("controller", f"srun -N1 -w big-01 sh -c 'mkdir -p {WORK} && echo {kept} > {WORK}/kept'")
    step_steps = tier.up("replace_up_s")
    check_replacement(tier, step_steps, domains)
    # The new VM mounted the shared file system at boot, and what the old one wrote is still there.
    assert tier.on("big-01", f"cat {WORK}/kept").strip() == kept

    # 6. destroy: refused while anything is protected; then unprotected on purpose.
    destroy(tier)


def check_packages_came_with_the_image(tier: Tier) -> None:
    """Every node booted from the Packer-built image: its packages step (the one the image was built with)
    found every package installed and installed nothing (what it logged is the Command's stderr); the
    image itself was checked against its sha256 by the fetch Command."""
    steps = {
        r["urn"].split("::")[-1]: r["outputs"]
        for r in tier.stack.resources()
        if r["type"] == COMMAND and re.fullmatch(rf"{STACK}-packages-[a-z0-9-]+", r["urn"].split("::")[-1])
    }
    assert sorted(steps) == sorted(f"{STACK}-packages-{n}" for n in NAMES), sorted(steps)
    for name, out in steps.items():
        assert "[packages] packages ready" in out["stderr"], (name, out["stderr"])
        assert "installing" not in out["stderr"], (name, out["stderr"])
    # The image was checked against its pin by the program's own fetch Command (local, before the volume).
    fetches = [r for r in tier.stack.resources() if r["type"] == "command:local:Command"]
    assert [r["urn"].split("::")[-1] for r in fetches] == [f"{STACK}-hv-images-debian-12-fetch"], fetches
    assert "sha256 matches" in fetches[0]["outputs"]["stderr"], fetches[0]["outputs"]


def check_replacement(tier: Tier, steps: list[Step], domains_before: dict[str, str]) -> None:
    by = {(s.name, s.op): s for s in steps}
    domain = f"{STACK}-big-01-domain"
    member = f"{STACK}-slurm-controller-member-big-01"
    deleted, created = by[(domain, "delete-replaced")], by[(domain, "create-replacement")]
    # The drain (the membership Command's delete) finished before the VM was deleted...
    drain = by[(member, "delete-replaced")]
    assert drain.finished < deleted.started, (drain, deleted)
    # ...which was deleted before its replacement was created (delete_before_replace: one name, one VM).
    assert deleted.finished < created.started, (deleted, created)
    # The node is resumed (the new membership Command) only after its new VM runs slurmd again.
    join = by[(member, "create-replacement")]
    slurmd = by[(f"{STACK}-slurm-big-01-slurmd", "create-replacement")]
    assert slurmd.finished < join.started
    tier.timings["replace_drain_s"] = round(drain.finished_at - drain.started_at, 1)
    tier.timings["replace_vm_delete_to_create_s"] = round(created.started_at - deleted.started_at, 1)
    tier.timings["replace_vm_create_to_idle_s"] = round(join.finished_at - created.started_at, 1)
    # Only that VM is new; it has its new size; its data and host key stayed.
    after = tier.domain_uuids()
    assert after.keys() == domains_before.keys()
    assert [n for n in after if after[n] != domains_before[n]] == [f"{STACK}-big-01"]
    assert "<memory unit='KiB'>1341440</memory>" in tier.virsh("dumpxml", f"{STACK}-big-01")
    # The drain really happened (slurmctld logged the program's reason), and the node is back, idle.
    reason = "hyperscaler: node removed or replaced"
    log = tier.on("controller", "cat /var/log/slurm/slurmctld.log")
    assert re.search(rf"big-01.*{re.escape(reason)}|{re.escape(reason)}.*big-01", log), log[-3000:]
    assert idle_nodes(tier) == COMPUTE
    assert tier.on("controller", "sinfo -h -N -n big-01 -o '%E'").strip() in ("", "none")
    outputs = tier.stack.outputs()
    assert outputs["known_hosts"] == tier.known_hosts.read_text(), "the replaced VM got another host key"
    check_canary(outputs)
    assert tier.on("big-01", "hostname").strip() == "big-01"
    tier.timed("preview_after_replace_s", "preview", "--expect-no-changes")


def destroy(tier: Tier) -> None:
    stack = tier.stack
    refused = stack.pulumi("destroy", "--yes", ok=False)
    assert refused.returncode != 0 and "protected" in refused.stdout + refused.stderr, refused.stdout
    assert len(tier.domain_uuids()) == len(NAMES), "a refused destroy deleted something"
    protected = [r for r in stack.resources() if r.get("protect")]
    kinds = sorted(r["type"] for r in protected)
    volume = "libvirt:index/volume:Volume"
    assert kinds == ["libvirt:index/pool:Pool", volume, volume], kinds
    for r in protected:  # on purpose, one by one
        stack.pulumi("state", "unprotect", r["urn"], "--yes")
    tier.timed("destroy_s", "destroy", "--yes")
    assert not stack.resources()
    assert tier.virsh("list", "--all", "--name").split() == []
    assert tier.virsh("net-list", "--all", "--name").split() == []
    # retain_on_delete: the pool, the controller's state volume and the storage node's data volume are
    # still there; remove them.
    pools = tier.virsh("pool-list", "--all", "--name").split()
    assert pools == ["hyperscaler"], pools
    volumes = tier.virsh("vol-list", "--pool", "hyperscaler").split()
    retained = [f"{STACK}-controller-state.qcow2", f"{STACK}-{STORAGE}-data-1.qcow2"]
    assert set(retained) <= set(volumes) and not any("root" in v for v in volumes), volumes
    for name in retained:
        tier.virsh("vol-delete", "--pool", "hyperscaler", name)
    tier.virsh("pool-destroy", "hyperscaler")
    tier.virsh("pool-undefine", "hyperscaler")
    assert tier.virsh("pool-list", "--all", "--name").split() == []
