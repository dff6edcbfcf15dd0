"""N SSH-reachable "nodes" on this machine, for integration tests.

Each node is a network namespace plus its own mount/uts/pid namespaces over an overlayfs of the cached
rootfs, with `sshd -D` as the pid namespace's init. Verified recipe: section 6 of
/work/shared/reference/sandbox.md.

Topology: the bridge lives in a "switch" network namespace of its own, so the host's firewall never sees
the frames bridged between nodes (a default dockerd sets the host's FORWARD policy to DROP, and with
net.bridge.bridge-nf-call-iptables=1 bridged frames traverse FORWARD). The host reaches the nodes through
one veth pair, the uplink: its host end carries <subnet>.1/24, its other end is a port of the switch's
bridge. Host<->node traffic is therefore ordinary local traffic for the host (INPUT/OUTPUT), and
node<->node traffic never leaves the switch namespace, whose own FORWARD chain nobody touches.

    host side (host or host_netns)   switch netns <prefix><run>-_sw       node netns <prefix><run>-<name>
    <prefix><run>up  .1/24  <====>  uplink ----------+
                                                     bridge <prefix><run>br
                                    <prefix><run>v0 -+     <====>  eth0  .11  (node1)
                                    <prefix><run>v1 -+     <====>  eth0  .12  (node2) ...

(<====> is a veth pair, -+ a bridge port.) The test-only `_legacy_bridge` topology puts the bridge, with
.1, and the node veths straight into the host side instead; it exists to show what a host firewall does.

Nothing here configures SLURM: the project's own scripts do that over SSH.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from . import fake_nvidia
from ._util import (
    CLEAN_ENV,
    HarnessError,
    children_of,
    mounts_under,
    proc_alive,
    proc_start_time,
    require_root,
    require_tools,
    run,
    sigkill,
    umount_all_under,
    wait_for_child,
)
from .rootfs import ensure_rootfs

NODE_TOOLS = ("ip", "nsenter", "unshare", "setpriv", "mount", "umount", "ssh", "ssh-keygen", "chroot")
DEFAULT_PREFIX = "hsci"
# /run is tmpfs: the registry of live runs disappears on reboot, together with what it describes.
STATE_DIR = Path("/run/hyperscaler-test")
RUNS_DIR = STATE_DIR / "runs"
SUBNET_POOL = "10.211"
# The switch namespace's suffix: "_" cannot occur in a node name, so it never collides with a node's netns.
SWITCH_SUFFIX = "-_sw"
UPLINK_PEER = "uplink"  # the switch-side end of the uplink (inside the switch namespace only)
CLONE_NEWNET = 0x40000000
FIRST_HOST_OCTET = 11
SSH_OPTIONS = (
    "-F", "/dev/null",
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityAgent=none",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=10",
)  # fmt: skip
# The same, but the node must present the one host key a known_hosts file pins (Node.pinned_argv).
PINNED_SSH_OPTIONS = (
    "-F", "/dev/null",
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityAgent=none",
    "-o", "StrictHostKeyChecking=yes",
    "-o", "BatchMode=yes",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=10",
)  # fmt: skip
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_PREFIX_RE = re.compile(r"^[a-z]{1,5}$")


def _free_char_major() -> int:
    """A character major no driver of this host uses (240-244: "local/experimental use" in the kernel's
    devices.txt, below where dynamic majors are handed out), so a fake device node opens nothing real."""
    text = Path("/proc/devices").read_text()
    chars = text.split("Block devices:")[0]
    used = {int(line.split()[0]) for line in chars.splitlines() if line.strip()[:1].isdigit()}
    free = [m for m in range(240, 245) if m not in used]
    if not free:
        raise HarnessError("no free character major in 240-244 for the fake /dev/nvidia-caps nodes")
    return free[0]


class NodeCommandError(subprocess.CalledProcessError):
    """A command on a node failed; the message carries the node name and the command's output."""

    def __init__(self, node: str, cmd: str, proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(proc.returncode, cmd, proc.stdout, proc.stderr)
        self.node = node

    def __str__(self) -> str:
        return (
            f"on {self.node}: {self.cmd!r} exited {self.returncode}\n"
            f"--- stdout ---\n{str(self.stdout)[-3000:]}\n--- stderr ---\n{str(self.stderr)[-3000:]}"
        )


@dataclass
class Node:
    """One node. `address` is reachable from the host and from every other node."""

    name: str
    index: int
    address: str
    netns: str
    veth: str
    workdir: Path
    private_key_path: Path
    init_pid: int | None = None
    init_start: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    mux_path: Path | None = None
    mux_proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # A second master that verified the node's host key against a pinned one: (key, process, socket path).
    pinned: tuple[str, subprocess.Popen[bytes], Path] | None = field(default=None, repr=False)
    # The named netns that plays the host: every ssh into the node starts there (None: this process's).
    host_netns: str | None = None

    @property
    def upper(self) -> Path:
        """The node's writable layer as seen from the host (read-only use while the node runs)."""
        return self.workdir / "upper"

    @property
    def log_path(self) -> Path:
        """sshd's stderr and the namespace setup script's output."""
        return self.workdir / "node.log"

    def ssh_argv(self, command: str) -> list[str]:
        # Through the harness's master connection while it lives; otherwise a direct (slower) login.
        live = self.mux_path is not None and self.mux_proc is not None and self.mux_proc.poll() is None
        mux = ["-o", f"ControlPath={self.mux_path}", "-o", "ControlMaster=no"] if live else []
        key = ["-i", str(self.private_key_path)]
        return [*_enter(self.host_netns), "ssh", *SSH_OPTIONS, *mux, *key, f"root@{self.address}", "--", command]

    def ssh(
        self,
        command: str | Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = 60,
        input: str | bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the node as root. A sequence is shell-quoted first."""
        cmd = command if isinstance(command, str) else shlex.join(command)
        data = input.encode() if isinstance(input, str) else input
        # stdin is /dev/null unless input is given, so ssh never steals the test runner's stdin.
        proc = subprocess.run(
            self.ssh_argv(cmd),
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=CLEAN_ENV,
            check=False,
        )
        result = subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
        if check and result.returncode != 0:
            raise NodeCommandError(self.name, cmd, result)
        return result

    def put_file(self, path: str, data: str | bytes, *, mode: int = 0o644, owner: str = "root") -> None:
        """Write a file on the node (parents created), through SSH like the real provisioner would."""
        q = shlex.quote(path)
        self.ssh(
            f'set -e; mkdir -p "$(dirname {q})"; umask 077; cat > {q}.hscitmp; '
            f"chown {shlex.quote(owner)}: {q}.hscitmp; chmod {mode:o} {q}.hscitmp; mv -f {q}.hscitmp {q}",
            input=data,
        )

    def read_file(self, path: str) -> str:
        return self.ssh(["cat", path]).stdout

    def install_host_key(self, private_openssh: str, public_openssh: str) -> None:
        """Make sshd present this host key, as cloud-init's ssh_keys does on a VM: write the key, then SIGHUP
        sshd (the node's init, started by this harness), which re-executes itself and loads it."""
        self.put_file("/etc/ssh/ssh_host_ed25519_key", private_openssh, mode=0o600)
        self.put_file("/etc/ssh/ssh_host_ed25519_key.pub", public_openssh.strip() + "\n")
        if self.init_pid is None:
            raise HarnessError(f"node {self.name} is not running")
        os.kill(self.init_pid, signal.SIGHUP)
        wanted = " ".join(public_openssh.split()[:2])
        deadline = time.monotonic() + 10
        while self._presented_key() != wanted:
            if time.monotonic() > deadline:
                raise HarnessError(f"sshd on {self.name} does not present the installed host key")
            time.sleep(0.05)

    def _presented_key(self) -> str:
        argv = [*_enter(self.host_netns), "ssh-keyscan", "-T", "2", "-t", "ed25519", self.address]
        out = subprocess.run(argv, capture_output=True, text=True, env=CLEAN_ENV, check=False, timeout=10).stdout
        line = next((line for line in out.splitlines() if not line.startswith("#")), "")
        return " ".join(line.split()[1:3])

    def pinned_argv(self, command: str, known_hosts: Path, control: Path | None = None) -> list[str]:
        """ssh that accepts only the key in `known_hosts` from the node, as pulumi-command does with
        connection.hostKey (through a pinned master connection when `control` is given)."""
        mux = ["-o", f"ControlPath={control}", "-o", "ControlMaster=no"] if control else []
        key_type = known_hosts.read_text().split()[1]
        pin = ["-o", f"UserKnownHostsFile={known_hosts}", "-o", f"HostKeyAlgorithms={key_type}"]
        return [
            *_enter(self.host_netns), "ssh", *PINNED_SSH_OPTIONS, *pin, *mux,
            "-i", str(self.private_key_path), f"root@{self.address}", "--", command,
        ]  # fmt: skip

    def host_pids(self) -> list[int]:
        """Host-side pids of every process in this node's network namespace (empty once torn down)."""
        return pids_in_netns(self.netns)

    def nsexec(
        self, argv: Sequence[str], *, check: bool = True, timeout: float | None = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the node's namespaces without SSH (for debugging a broken sshd)."""
        if self.init_pid is None:
            raise HarnessError(f"node {self.name} is not running")
        return run(
            [
                "nsenter",
                f"--target={self.init_pid}",
                "--mount",
                "--uts",
                "--net",
                "--pid",
                "--root",
                "--wd",
                *argv,
            ],
            check=check,
            timeout=timeout,
        )


class Cluster:
    """A context manager that brings up `n_nodes` nodes and always tears them down.

    >>> with Cluster(3) as cluster:
    ...     cluster.nodes[0].ssh("hostname").stdout
    'node1\\n'

    `subnet` ("10.211.5") is picked automatically among free 10.211.X/24 unless given; the host end of
    the uplink gets .1 and node i gets .(11+i). root's authorized_keys holds the harness's own key
    (`private_key_path`) plus any `authorized_keys` given. Pass `rootfs=ensure_rootfs(packages=...)`
    for nodes with more software. Names of everything created on the host start with
    `prefix` + a random run id, so concurrent runs never collide and stale debris is recognisable.

    `host_netns` names an existing network namespace (in /run/netns) that plays the host: the uplink's
    host end and every SSH connection into the nodes live there instead of in this process's namespace
    (entered with `nsenter --net`, never `ip netns exec`, which remounts /sys). Tests use it to give the
    "host" a firewall of its own.

    `_legacy_bridge` is for tests only: it builds the old topology (the bridge with .1 directly in the
    host-side namespace, node veths enslaved to it there, no switch namespace), so a test can show that a
    host firewall breaks it.
    """

    def __init__(
        self,
        n_nodes: int = 3,
        *,
        names: Sequence[str] | None = None,
        subnet: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        rootfs: Path | None = None,
        boot_timeout: float = 30.0,
        tmp_root: Path | None = None,
        authorized_keys: Sequence[str] = (),
        fake_gpus: Mapping[str, int] | None = None,
        fake_nvidia: Mapping[str, str] | None = None,
        disks: Mapping[str, Mapping[str, int]] | None = None,
        host_netns: str | None = None,
        _legacy_bridge: bool = False,
    ) -> None:
        names = list(names) if names is not None else [f"node{i + 1}" for i in range(n_nodes)]
        if len(names) != n_nodes:
            raise ValueError(f"{n_nodes} nodes but {len(names)} names")
        if not 1 <= n_nodes <= 200:
            raise ValueError("n_nodes must be between 1 and 200")
        bad = [n for n in names if not _NAME_RE.match(n)]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"node names must be unique lowercase hostnames: {names}")
        if not _PREFIX_RE.match(prefix):
            raise ValueError("prefix must be 1-5 lowercase letters (interface names are limited to 15 chars)")
        if subnet is not None and not re.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}", subnet):
            raise ValueError(f"subnet must look like '10.211.0', got {subnet!r}")
        if host_netns is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", host_netns):
            raise ValueError(f"host_netns must be the name of a netns in /run/netns, got {host_netns!r}")
        self.prefix = prefix
        self.run_id = secrets.token_hex(3)
        self.host_netns = host_netns
        self.legacy_bridge = _legacy_bridge
        self.bridge = f"{prefix}{self.run_id}br"
        # The switch namespace holding the bridge and the nodes' veths; none in the legacy topology.
        self.switch_netns: str | None = None if _legacy_bridge else f"{prefix}{self.run_id}{SWITCH_SUFFIX}"
        # The uplink's end in the host-side namespace (carries .1); none in the legacy topology.
        self.uplink: str | None = None if _legacy_bridge else f"{prefix}{self.run_id}up"
        self._names = names
        self._requested_subnet = subnet
        self._rootfs = rootfs
        self._boot_timeout = boot_timeout
        self._tmp_root = tmp_root if tmp_root is not None else _default_tmp_root()
        self._extra_keys = [k.strip() for k in authorized_keys]
        self._fake_gpus = dict(fake_gpus or {})
        # node -> PCI device ID ("0x233010DE") of its fake GPUs, for nodes that also get the stand-ins for the
        # NVIDIA driver's interface (harness/fake_nvidia.py): /dev/nvidia-caps, /proc/driver files, tools.
        self._fake_nvidia = dict(fake_nvidia or {})
        if set(self._fake_nvidia) - set(self._fake_gpus):
            raise ValueError("fake_nvidia names nodes without fake_gpus")
        self._caps_major = 0
        # node -> {path inside the node's /dev, e.g. "disk/by-id/virtio-hs-state": size in MiB}
        self._disks = {node: dict(d) for node, d in (disks or {}).items()}
        self._loops: dict[str, dict[str, str]] = {}  # node -> {path in /dev: host loop device}
        unknown = sorted((set(self._fake_gpus) | set(self._disks)) - set(names))
        if unknown:
            raise ValueError(f"fake_gpus or disks name unknown nodes: {unknown}")
        self.subnet = ""
        self.workdir = Path()
        self.rootfs = Path()
        self.nodes: list[Node] = []
        self._registry = RUNS_DIR / f"{prefix}{self.run_id}.json"
        self._started = False
        self._closed = False

    # --- public API -------------------------------------------------------------------------------

    @property
    def host_address(self) -> str:
        return f"{self.subnet}.1"

    @property
    def private_key_path(self) -> Path:
        return self.workdir / "id_ed25519"

    @property
    def public_key(self) -> str:
        return (self.workdir / "id_ed25519.pub").read_text().strip()

    def __getitem__(self, key: int | str) -> Node:
        if isinstance(key, int):
            return self.nodes[key]
        for node in self.nodes:
            if node.name == key:
                return node
        raise KeyError(key)

    def hosts_file(self) -> str:
        lines = [
            "127.0.0.1 localhost",
            "::1 localhost ip6-localhost ip6-loopback",
            f"{self.host_address} harness-host",
        ]
        lines += [f"{n.address} {n.name}" for n in self.nodes]
        return "\n".join(lines) + "\n"

    def node_at(self, address: str) -> Node:
        return next(n for n in self.nodes if n.address == address)

    def ssh_pinned(
        self, address: str, command: str, host_key: str, stdin: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on the node at `address` only if it presents `host_key` ("ssh-ed25519 AAAA..."),
        the way pulumi-command treats connection.hostKey; another key fails with ssh's verification error.
        One pinned master connection per node and key keeps it fast."""
        node = self.node_at(address)
        known_hosts = self.workdir / f"known_hosts-{node.index}"
        if node.pinned is None or node.pinned[0] != host_key or node.pinned[1].poll() is not None:
            _stop_pinned(node)
            known_hosts.write_text(f"{node.address} {host_key}\n")
            control = self.workdir / f"pin-{node.index}"
            argv = ["setpriv", "--pdeathsig", "KILL", *node.pinned_argv("", known_hosts)[:-3], "-M", "-N",
                    "-o", f"ControlPath={control}", "-o", "ControlPersist=no", f"root@{node.address}"]  # fmt: skip
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=CLEAN_ENV, start_new_session=True,
            )  # fmt: skip
            node.pinned = (host_key, proc, control)
            deadline = time.monotonic() + 15
            while not control.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
        _, proc, control = node.pinned
        live = proc.poll() is None and control.exists()
        argv = node.pinned_argv(command, known_hosts, control if live else None)
        data = stdin.encode() if stdin is not None else None
        done = subprocess.run(
            argv, input=data, stdin=None if data is not None else subprocess.DEVNULL, capture_output=True,
            timeout=timeout, env=CLEAN_ENV, check=False,
        )  # fmt: skip
        return subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        )

    def ssh_all(self, command: str, **kwargs: Any) -> dict[str, subprocess.CompletedProcess[str]]:
        """Run the same command on every node in parallel."""
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            futures = {n.name: pool.submit(n.ssh, command, **kwargs) for n in self.nodes}
            return {name: f.result() for name, f in futures.items()}

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.close()
        except HarnessError:
            # Never hide the test's own failure behind a teardown complaint.
            if exc is None:
                raise

    # --- bring-up ---------------------------------------------------------------------------------

    def start(self) -> Cluster:
        """Bring the nodes up; on any failure (Ctrl-C included) tear down what exists, then re-raise.

        Call it from a thread that outlives the cluster (pytest's main thread does): the node processes
        are tied to the starting thread's lifetime so that they cannot outlive a killed harness.
        """
        if self._started:
            raise HarnessError("a Cluster can be started only once")
        self._started = True
        try:
            self._start()
        except BaseException:
            with contextlib.suppress(HarnessError):
                self.close()  # the original error matters more than teardown complaints
            raise
        return self

    @property
    def bridge_netns(self) -> str | None:
        """Where the bridge and the nodes' veths live (None: this process's own namespace)."""
        return self.host_netns if self.switch_netns is None else self.switch_netns

    def _start(self) -> None:
        require_root()
        require_tools(NODE_TOOLS)
        if self.host_netns is not None and not Path("/run/netns", self.host_netns).exists():
            raise HarnessError(f"host_netns {self.host_netns!r} does not exist in /run/netns")
        self.rootfs = self._rootfs if self._rootfs is not None else ensure_rootfs()
        self._tmp_root.mkdir(parents=True, exist_ok=True)
        with _state_lock():
            _cleanup_stale_locked(self.prefix)
            self.subnet = _pick_subnet(self._requested_subnet)
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}{self.run_id}-", dir=self._tmp_root))
            self.nodes = [
                Node(
                    name=name,
                    index=i,
                    address=f"{self.subnet}.{FIRST_HOST_OCTET + i}",
                    netns=f"{self.prefix}{self.run_id}-{name}",
                    veth=f"{self.prefix}{self.run_id}v{i}",
                    workdir=self.workdir / name,
                    private_key_path=self.workdir / "id_ed25519",
                    host_netns=self.host_netns,
                )
                for i, name in enumerate(self._names)
            ]
            # The record exists before anything it describes, so debris is always attributable.
            self._write_registry()
            self._plumb_switch()
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"hyperscaler-test-{self.run_id}",
             "-f", str(self.private_key_path)])  # fmt: skip
        for node in self.nodes:
            self._prepare_upper(node)
            self._plumb_network(node)
            self._attach_disks(node)
        for node in self.nodes:
            self._launch(node)
        self._write_registry()
        self._wait_for_ssh()

    def _prepare_upper(self, node: Node) -> None:
        """Seed the node's upper layer before the overlay is mounted (writing it later is undefined)."""
        upper = node.upper
        for sub in ("upper", "work", "merged"):
            (node.workdir / sub).mkdir(parents=True)
        for rel in ("etc/ssh", "root/.ssh"):
            self._mkdirs_like_lower(upper, rel)
        (upper / "root/.ssh").chmod(0o700)
        (upper / "etc/hosts").write_text(self.hosts_file())
        (upper / "etc/hostname").write_text(node.name + "\n")
        auth = upper / "root/.ssh/authorized_keys"
        auth.write_text("\n".join([self.public_key, *self._extra_keys]) + "\n")
        auth.chmod(0o600)
        key = upper / "etc/ssh/ssh_host_ed25519_key"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{node.name}", "-f", str(key)])
        if node.name in self._fake_nvidia:
            self._install_fake_nvidia(node)

    def _fake_gpu_buses(self, node: Node) -> list[tuple[str, int]]:
        return [(f"0000:{0x41 + i:02x}:00.0", i) for i in range(self._fake_gpus[node.name])]

    def _install_fake_nvidia(self, node: Node) -> None:
        """The stand-in tools and their state in the upper layer; the /proc/driver files beside it (copied
        onto a tmpfs over /proc/driver at launch)."""
        if not self._caps_major:
            self._caps_major = _free_char_major()
        upper = node.upper
        lib = upper / "usr/local/lib/hyperscaler-test"
        lib.mkdir(parents=True)
        program = lib / "fake_nvidia.py"
        shutil.copy(Path(fake_nvidia.__file__), program)
        program.chmod(0o755)
        (upper / "usr/local/bin").mkdir(parents=True, exist_ok=True)
        for tool in ("nvidia-smi", "nvidia-mig-parted", "nvidia-modprobe"):
            (upper / "usr/local/bin" / tool).symlink_to("/usr/local/lib/hyperscaler-test/fake_nvidia.py")
        buses = self._fake_gpu_buses(node)
        state = fake_nvidia.initial_state(buses, self._fake_nvidia[node.name], self._caps_major)
        (upper / "var/lib/fake-nvidia").mkdir(parents=True)
        (upper / "var/lib/fake-nvidia/state.json").write_text(json.dumps(state, indent=1))
        for rel, text in fake_nvidia.render_proc_files(buses).items():
            target = node.workdir / "proc-driver" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def _mkdirs_like_lower(self, upper: Path, rel: str) -> None:
        # A plain upper directory merges with the lower one but its mode/owner win: copy them.
        parts = Path(rel).parts
        for depth in range(1, len(parts) + 1):
            sub = Path(*parts[:depth])
            target = upper / sub
            if target.exists():
                continue
            target.mkdir()
            lower = self.rootfs / sub
            if lower.is_dir():
                st = lower.stat()
                os.chown(target, st.st_uid, st.st_gid)
                target.chmod(st.st_mode & 0o7777)

    def _plumb_switch(self) -> None:
        host = self.host_netns
        if self.switch_netns is None:  # legacy, tests only: the bridge itself is the host's interface
            run(_ip(host, "link", "add", self.bridge, "type", "bridge"))
            run(_ip(host, "addr", "add", f"{self.host_address}/24", "dev", self.bridge))
            run(_ip(host, "link", "set", self.bridge, "up"))
            return
        assert self.uplink is not None
        sw = self.switch_netns
        run(["ip", "netns", "add", sw])
        run(_ip(sw, "link", "set", "lo", "up"))
        run(_ip(sw, "link", "add", self.bridge, "type", "bridge"))
        run(_ip(sw, "link", "set", self.bridge, "up"))
        run(_ip(host, "link", "add", self.uplink, "type", "veth", "peer", "name", UPLINK_PEER, "netns", sw))
        run(_ip(sw, "link", "set", UPLINK_PEER, "master", self.bridge, "up"))
        run(_ip(host, "addr", "add", f"{self.host_address}/24", "dev", self.uplink))
        run(_ip(host, "link", "set", self.uplink, "up"))

    def _plumb_network(self, node: Node) -> None:
        ns = node.netns
        where = self.bridge_netns
        run(["ip", "netns", "add", ns])
        run(_ip(where, "link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", ns))
        run(_ip(where, "link", "set", node.veth, "master", self.bridge, "up"))
        run(["ip", "-n", ns, "addr", "add", f"{node.address}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "route", "add", "default", "via", self.host_address])

    def _launch(self, node: Node) -> None:
        merged = shlex.quote(str(node.workdir / "merged"))
        overlay = f"lowerdir={self.rootfs},upperdir={node.workdir / 'upper'},workdir={node.workdir / 'work'}"
        script = f"""set -e
mount -t overlay overlay -o {shlex.quote(overlay)} {merged}
mount -t proc proc {merged}/proc
mount --rbind /sys {merged}/sys
{self._dev_setup(node, merged)}
mount -t tmpfs -o mode=755 tmpfs {merged}/run
mkdir -p {merged}/run/sshd {merged}/run/lock
chmod 1777 {merged}/run/lock
hostname {shlex.quote(node.name)}
exec chroot {merged} /usr/sbin/sshd -D -e -o ListenAddress={node.address} \\
    -o HostKey=/etc/ssh/ssh_host_ed25519_key -o MaxSessions=200 -o MaxStartups=100:30:200
"""
        # setpriv: the chain gets SIGKILL if the starting thread dies; --kill-child then takes the pid
        # namespace down with unshare. The mounts live only in the node's private mount namespace, so
        # they vanish with it and never appear on the host. A new session keeps the terminal's Ctrl-C
        # away from the nodes so that teardown stays orderly.
        argv = [
            "setpriv", "--pdeathsig", "KILL",
            "nsenter", f"--net=/run/netns/{node.netns}",
            "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child=SIGKILL",
            "--propagation", "private", "sh", "-c", script,
        ]  # fmt: skip
        with open(node.log_path, "wb") as log:
            node.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=CLEAN_ENV,
                start_new_session=True,
            )  # fmt: skip
        node.init_pid = wait_for_child(node.proc.pid)
        node.init_start = proc_start_time(node.init_pid)

    def _attach_disks(self, node: Node) -> None:
        """Sparse files on loop devices, to stand in for a VM's virtio disks (the node sees them by-id)."""
        for rel, size_mib in sorted(self._disks.get(node.name, {}).items()):
            image = node.workdir / f"disk-{rel.replace('/', '_')}.img"
            with open(image, "wb") as handle:
                handle.truncate(size_mib * 1024 * 1024)
            loop = run(["losetup", "--find", "--show", str(image)]).stdout.strip()
            self._loops.setdefault(node.name, {})[rel] = loop

    def _dev_setup(self, node: Node, merged: str) -> str:
        """The host's /dev, or for a node with fake GPUs or disks a private /dev holding /dev/nvidia0..N-1
        (character devices with NVIDIA's major 195) and the disks, so the host's /dev is never written."""
        count = self._fake_gpus.get(node.name, 0)
        loops = self._loops.get(node.name, {})
        if not count and not loops:
            return f"mount --rbind /dev {merged}/dev"
        lines = [f"mount -t tmpfs -o mode=755,size=1m tmpfs {merged}/dev"]
        for dev in ("null", "zero", "full", "random", "urandom", "tty"):
            lines += [f"touch {merged}/dev/{dev}", f"mount --bind /dev/{dev} {merged}/dev/{dev}"]
        lines += [
            f"mkdir -m 755 {merged}/dev/pts {merged}/dev/shm",
            f"mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts {merged}/dev/pts",
            f"ln -s pts/ptmx {merged}/dev/ptmx",
            f"mount -t tmpfs -o mode=1777 tmpfs {merged}/dev/shm",
            f"ln -s /proc/self/fd {merged}/dev/fd",
            f"ln -s /proc/self/fd/0 {merged}/dev/stdin",
            f"ln -s /proc/self/fd/1 {merged}/dev/stdout",
            f"ln -s /proc/self/fd/2 {merged}/dev/stderr",
        ]
        lines += [f"mknod -m 666 {merged}/dev/nvidia{i} c 195 {i}" for i in range(count)]
        if node.name in self._fake_nvidia:
            proc = shlex.quote(str(node.workdir / "proc-driver"))
            lines += [
                f"mkdir -m 755 {merged}/dev/nvidia-caps",
                f"mount -t tmpfs -o mode=755,size=1m tmpfs {merged}/proc/driver",
                f"cp -r {proc}/. {merged}/proc/driver/",
            ]
        for rel, loop in sorted(loops.items()):
            target = f"{merged}/dev/{rel}"
            lines += [f"mkdir -p $(dirname {target})", f"touch {target}", f"mount --bind {loop} {target}"]
        return "\n".join(lines)

    def _wait_for_ssh(self) -> None:
        deadline = time.monotonic() + self._boot_timeout
        for node in self.nodes:
            while True:
                if node.proc is not None and node.proc.poll() is not None:
                    raise HarnessError(f"node {node.name} died during boot:\n{_tail(node.log_path)}")
                try:
                    _probe_tcp(node.address, 22, self.host_netns, timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise HarnessError(
                            f"sshd on {node.name} ({node.address}) not listening after "
                            f"{self._boot_timeout}s:\n{_tail(node.log_path)}"
                        ) from None
                    time.sleep(0.05)
        self._start_masters(deadline)
        # Listening is not answering: prove a key-based login works everywhere.
        results = self.ssh_all("true", check=False, timeout=self._boot_timeout)
        failed = {name: r for name, r in results.items() if r.returncode != 0}
        if failed:
            details = "\n".join(
                f"{name}: rc={r.returncode} {r.stderr.strip()}\n{_tail(self[name].log_path)}"
                for name, r in failed.items()
            )
            raise HarnessError(f"ssh login failed on {sorted(failed)}:\n{details}")

    def _start_masters(self, deadline: float) -> None:
        """One persistent SSH connection per node: a fresh login costs ~0.4 s here, a multiplexed one ~10 ms.

        The masters are our own foreground children (killed in close()), not ControlPersist daemons.
        """
        for node in self.nodes:
            path = self.workdir / f"mux-{node.index}"
            if len(str(path)) > 100:  # unix socket path limit; stay with direct logins
                continue
            argv = [
                "setpriv", "--pdeathsig", "KILL", *_enter(self.host_netns),
                "ssh", *SSH_OPTIONS, "-i", str(self.private_key_path), "-M", "-N",
                "-o", f"ControlPath={path}", "-o", "ControlPersist=no", f"root@{node.address}",
            ]  # fmt: skip
            node.mux_proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=CLEAN_ENV, start_new_session=True,
            )  # fmt: skip
            node.mux_path = path
        for node in self.nodes:
            while node.mux_path is not None and not node.mux_path.exists():
                if node.mux_proc is None or node.mux_proc.poll() is not None or time.monotonic() > deadline:
                    break  # not fatal: the login check below reports real SSH problems
                time.sleep(0.01)

    def _write_registry(self) -> None:
        RUNS_DIR.mkdir(parents=True, exist_ok=True)
        record = {
            "run_id": self.run_id,
            "prefix": self.prefix,
            "owner_pid": os.getpid(),
            "owner_start": proc_start_time(os.getpid()),
            "subnet": self.subnet,
            "bridge": self.bridge,
            "workdir": str(self.workdir),
            "host_netns": self.host_netns,
            "switch_netns": self.switch_netns,
            "netns": [n.netns for n in self.nodes] + ([self.switch_netns] if self.switch_netns else []),
            # links in the host-side namespace (host_netns, or the host's own); the rest die with the switch
            "links": self._host_side_links(),
            "inits": [[n.init_pid, n.init_start] for n in self.nodes if n.init_pid is not None],
        }
        tmp = self._registry.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(self._registry)

    # --- teardown ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Tear everything down; safe to call twice and after a partial start. Ctrl-C is deferred."""
        if self._closed or not self._started:
            return
        self._closed = True
        with _sigint_deferred():
            problems: list[str] = []
            for node in self.nodes:
                _stop_master(node)
                _stop_pinned(node)
            for node in self.nodes:
                _stop_node(node)
            for node in self.nodes:
                problems += _kill_netns_processes(node.netns)
                if self.switch_netns is None:
                    run(_ip(self.host_netns, "link", "del", node.veth), check=False)
                run(["ip", "netns", "del", node.netns], check=False)
            # The nodes' mount namespaces are gone, so nothing holds the loop devices any more.
            for loops in self._loops.values():
                for loop in loops.values():
                    if run(["losetup", "-d", loop], check=False).returncode != 0:
                        problems.append(f"loop device {loop} still attached")
            self._loops = {}
            if self.switch_netns is None:
                run(_ip(self.host_netns, "link", "del", self.bridge), check=False)
            else:
                # Deleting one end of a veth deletes both, synchronously; the netns itself goes next.
                if self.uplink is not None and _netns_present(self.host_netns):
                    run(_ip(self.host_netns, "link", "del", self.uplink), check=False)
                problems += _kill_netns_processes(self.switch_netns)
                run(["ip", "netns", "del", self.switch_netns], check=False)
            if self.workdir != Path() and self.workdir.exists():
                umount_all_under(self.workdir)
                if mounts_under(self.workdir):
                    problems.append(f"mounts remain under {self.workdir}: {mounts_under(self.workdir)}")
                else:
                    shutil.rmtree(self.workdir, ignore_errors=True)
            problems += self._leftovers()
            if not problems:
                self._registry.unlink(missing_ok=True)
        if problems:
            raise HarnessError("teardown left debris (the next run will retry): " + "; ".join(problems))

    def _host_side_links(self) -> list[str]:
        """The links this run puts into the host-side namespace."""
        if self.switch_netns is None:
            return [n.veth for n in self.nodes] + [self.bridge]
        return [self.uplink] if self.uplink is not None else []

    def _leftovers(self) -> list[str]:
        found = []
        names = _netns_names()
        links = _link_names(self.host_netns) if _netns_present(self.host_netns) else set()
        for node in self.nodes:
            if node.netns in names:
                found.append(f"netns {node.netns}")
            if node.init_pid is not None and proc_alive(node.init_pid, node.init_start):
                found.append(f"process {node.init_pid}")
        if self.switch_netns is not None and self.switch_netns in names:
            found.append(f"netns {self.switch_netns}")
        where = f" in netns {self.host_netns}" if self.host_netns else ""
        found += [f"link {name}{where}" for name in self._host_side_links() if name in links]
        if self.workdir != Path() and self.workdir.exists():
            found.append(f"dir {self.workdir}")
        return found


# --- teardown helpers (also used for stale runs) -----------------------------------------------------


def _stop_pinned(node: Node) -> None:
    if node.pinned is not None and node.pinned[1].poll() is None:
        node.pinned[1].kill()
        node.pinned[1].wait(timeout=5)
    node.pinned = None


def _stop_master(node: Node) -> None:
    if node.mux_proc is not None and node.mux_proc.poll() is None:
        node.mux_proc.kill()
        node.mux_proc.wait(timeout=5)
    node.mux_path = None


def _stop_node(node: Node) -> None:
    proc = node.proc
    init_pid = node.init_pid
    if init_pid is None and proc is not None and proc.poll() is None:
        kids = children_of(proc.pid)
        init_pid = kids[0] if kids else None
    # SIGKILL the namespace init: unshare and a pid-namespace init both ignore SIGTERM.
    if init_pid is not None:
        sigkill(init_pid, node.init_start)
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own direct child; --kill-child takes its namespace with it
            proc.wait(timeout=5)


def _netns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except FileNotFoundError:
        return None


def _pids_in_netns(inode: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                pids.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def pids_in_netns(netns: str) -> list[int]:
    inode = _netns_inode(netns)
    return [] if inode is None else [p for p in _pids_in_netns(inode) if proc_alive(p)]


def _kill_netns_processes(netns: str, timeout: float = 5.0) -> list[str]:
    """SIGKILL whatever still runs in one of *our* network namespaces (e.g. via nsenter --net)."""
    inode = _netns_inode(netns)
    if inode is None:
        return []
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in _pids_in_netns(inode) if proc_alive(p)]
        if not pids:
            return []
        if time.monotonic() > deadline:
            return [f"processes {pids} in netns {netns}"]
        for pid in pids:
            sigkill(pid)
        time.sleep(0.05)


def _netns_names() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def _netns_present(netns: str | None) -> bool:
    """True for this process's own namespace (None) and for a named netns that still exists."""
    return netns is None or Path("/run/netns", netns).exists()


def _enter(netns: str | None) -> list[str]:
    """argv prefix that runs a command in a named netns (nsenter, not `ip netns exec`: that remounts /sys)."""
    return [] if netns is None else ["nsenter", f"--net=/run/netns/{netns}"]


def _ip(netns: str | None, *args: str) -> list[str]:
    """`ip` in a named netns (`ip -n` switches only the ip process itself), or in our own."""
    return ["ip", *(["-n", netns] if netns is not None else []), *args]


def _socket_in(netns: str | None) -> socket.socket:
    """A TCP socket created inside a named netns; it stays there whatever thread uses it later.

    setns(CLONE_NEWNET) applies to the calling thread only, so a short-lived thread does it and the
    harness's own threads keep their namespace."""
    if netns is None:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def make() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into netns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as exc:
            failed.append(exc)

    worker = threading.Thread(target=make, name=f"netns-{netns}")
    worker.start()
    worker.join()
    if failed:
        raise failed[0]
    return made[0]


def _probe_tcp(address: str, port: int, netns: str | None, timeout: float) -> None:
    """Connect once (from inside `netns` if given); raises OSError when nothing answers."""
    with _socket_in(netns) as sock:
        sock.settimeout(timeout)
        sock.connect((address, port))


def _link_names(netns: str | None = None) -> set[str]:
    out = run(_ip(netns, "-o", "link", "show")).stdout
    # "7: hsciab12cdv0@if2: <...>" -> "hsciab12cdv0"
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _default_tmp_root() -> Path:
    return Path(os.environ.get("HYPERSCALER_TEST_TMP", tempfile.gettempdir()))


@contextlib.contextmanager
def _state_lock() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until teardown has finished, then re-raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = signal.signal(signal.SIGINT, remember)
    try:
        yield
    finally:
        restore: Callable[[int, FrameType | None], Any] | int = (
            previous if previous is not None else signal.default_int_handler
        )
        signal.signal(signal.SIGINT, restore)
        if pending:
            raise KeyboardInterrupt


def _used_subnets() -> set[str]:
    used = set()
    out = run(["ip", "-4", "-o", "addr", "show"]).stdout
    for m in re.finditer(r"inet (\d+\.\d+\.\d+)\.\d+/", out):
        used.add(m.group(1))
    for record in _read_registry():
        if record.get("subnet"):
            used.add(str(record["subnet"]))
    return used


def _pick_subnet(requested: str | None) -> str:
    used = _used_subnets()
    if requested is not None:
        if requested in used:
            raise HarnessError(f"subnet {requested}.0/24 is already in use on this host")
        return requested
    for third in range(256):
        candidate = f"{SUBNET_POOL}.{third}"
        if candidate not in used:
            return candidate
    raise HarnessError(f"no free /24 left in {SUBNET_POOL}.0.0/16")


def _read_registry() -> list[dict[str, Any]]:
    records = []
    for path in sorted(RUNS_DIR.glob("*.json")) if RUNS_DIR.exists() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        record["_path"] = str(path)
        records.append(record)
    return records


def cleanup_stale(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Remove what dead harness runs with this prefix left behind; returns a description of it.

    Only things named `<prefix><6 hex run id>...` whose owning process is gone are touched, and the only
    processes killed are those inside such a network namespace.
    """
    require_root()
    with _state_lock():
        return _cleanup_stale_locked(prefix)


def _cleanup_stale_locked(prefix: str) -> list[str]:
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"bad prefix {prefix!r}")
    # Anchored on the exact shapes we create, so one prefix never matches another prefix's names.
    netns_or_dir = re.compile(rf"^{prefix}([0-9a-f]{{6}})-")
    link = re.compile(rf"^{prefix}([0-9a-f]{{6}})(?:br|up|v\d+)$")
    removed: list[str] = []
    live: set[str] = set()
    stale_records = []
    for record in _read_registry():
        if record.get("prefix") != prefix:
            continue
        if proc_alive(int(record["owner_pid"]), record.get("owner_start")):
            live.add(str(record["run_id"]))
        else:
            stale_records.append(record)

    def is_stale(name: str, pattern: re.Pattern[str] = netns_or_dir) -> bool:
        m = pattern.match(name)
        return m is not None and m.group(1) not in live

    # Links a dead run left in a host_netns of its own choosing (the generic sweep below only sees ours).
    for record in stale_records:
        host_ns = record.get("host_netns")
        if not host_ns or not _netns_present(str(host_ns)):
            continue
        try:
            present = _link_names(str(host_ns))
        except HarnessError:  # its owner deleted that namespace meanwhile, and the links with it
            continue
        for name in record.get("links") or []:
            if name in present and is_stale(str(name), link):
                run(_ip(str(host_ns), "link", "del", str(name)), check=False)
                removed.append(f"link {name} in netns {host_ns}")
    # Links first: deleting a veth end removes its peer at once, while a deleted netns is dismantled
    # asynchronously (its veths would vanish from the host a moment later).
    for name in sorted(n for n in _link_names() if is_stale(n, link)):
        run(["ip", "link", "del", name], check=False)
        removed.append(f"link {name}")
    for ns in sorted(n for n in _netns_names() if is_stale(n)):
        _kill_netns_processes(ns)
        run(["ip", "netns", "del", ns], check=False)
        removed.append(f"netns {ns}")
    dirs = {Path(str(r["workdir"])) for r in stale_records if r.get("workdir")}
    dirs |= {p for p in _default_tmp_root().glob(f"{prefix}*") if p.is_dir() and is_stale(p.name)}
    for d in sorted(dirs):
        if not is_stale(d.name) or not d.exists():
            continue
        umount_all_under(d)
        if not mounts_under(d):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(f"dir {d}")
    for record in stale_records:
        Path(record["_path"]).unlink(missing_ok=True)
    return removed


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


__all__ = ["NODE_TOOLS", "Cluster", "Node", "NodeCommandError", "cleanup_stale", "pids_in_netns"]
