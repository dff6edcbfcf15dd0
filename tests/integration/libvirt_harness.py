"""A throw-away libvirtd (+ virtlogd) for integration tests that leaves the host alone.

Isolation (checked on Debian 12, libvirt 9.0.0):
* its own network namespace (``ip netns add``), so libvirt networks, bridges, dnsmasq and iptables
  rules never touch the host's;
* its own *private* mount namespace, held open by a ``sleep`` process, in which a tmpfs covers
  ``/run`` (so ``/run/libvirtd.pid``, ``/run/virtlogd.pid`` and the sockets of any real libvirtd stay
  untouched) and per-instance temp dirs are bind-mounted over ``/run/libvirt``, ``/etc/libvirt`` (a copy
  of the host's top-level ``*.conf`` only, so host domains/networks are not loaded and our definitions
  are not persisted), ``/var/lib/libvirt``, ``/var/cache/libvirt`` and ``/var/log/libvirt``.

``virsh`` runs via ``nsenter --target <holder> --mount --net`` and talks to ``qemu:///system`` there.
From outside, ``Libvirtd.uri`` (``qemu+unix:///system?socket=<tmp>/run/libvirt-sock``) reaches the
same daemon (libvirt-python, the Pulumi provider).

The QEMU capability probe takes ~8 s on a cold cache; the cache is copied in from, and back out to,
``HS_LIBVIRTD_CACHE`` (default /var/tmp/hyperscaler-libvirtd-cache) so later runs start in ~0.2 s.
libvirt re-probes by itself when QEMU or libvirt change.

Teardown kills only what this instance started: its own PIDs, plus any process still living in its
private mount namespace (e.g. a dnsmasq spawned for a test network) or in its network namespace (QEMU,
which libvirt starts in a mount namespace of its own: a domain a failed test left running), then deletes
the netns and temp dir. It runs even when start-up fails half-way.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self
from xml.etree import ElementTree

from tests.integration.harness.nodes import pids_in_netns

# The venv's PATH may lack /usr/sbin, where libvirtd and virtlogd live.
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
TOOLS = (
    "libvirtd",
    "virtlogd",
    "virsh",
    "virt-xml-validate",
    "xsltproc",
    "nsenter",
    "unshare",
    "ip",
    "mount",
)
DEFAULT_CACHE = Path(os.environ.get("HS_LIBVIRTD_CACHE", "/var/tmp/hyperscaler-libvirtd-cache"))
# Directories the daemon writes to; each gets a private bind mount inside the namespace.
_STATE_DIRS = {
    "etc": "/etc/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
}


class HarnessError(RuntimeError):
    """The harness cannot do its job (missing tool, not root, the daemon did not come up)."""


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=CLEAN_ENV["PATH"])


def require_tools(tools: tuple[str, ...] = TOOLS) -> None:
    """Raise (so tests fail, never skip) when a tool is missing."""
    missing = [t for t in tools if _which(t) is None]
    if missing:
        raise HarnessError(
            f"missing tools: {', '.join(missing)} (Debian: libvirt-daemon-system libvirt-clients "
            "libxml2-utils xsltproc qemu-system-x86 iproute2 util-linux)"
        )


def _run(argv: list[str], *, timeout: float = 120) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=CLEAN_ENV, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def virt_xml_validate(xml: str, kind: str = "domain") -> tuple[int, str]:
    """Validate ``xml`` against libvirt's RelaxNG schema ``kind``.

    rc 0 valid, 3 schema-invalid, 1 not well-formed (virt-xml-validate's own codes)."""
    require_tools(("virt-xml-validate",))
    with tempfile.NamedTemporaryFile("w", suffix=".xml", prefix="hs-validate-") as f:
        f.write(xml)
        f.flush()
        return _run(["virt-xml-validate", f.name, kind], timeout=60)


def fix_dev_kvm() -> None:
    """chgrp kvm /dev/kvm; chmod 660 -- otherwise libvirt re-probes QEMU on every call and each
    ``virsh define`` takes ~55 s (sandbox.md, section 2)."""
    kvm = Path("/dev/kvm")
    if not kvm.exists():
        return
    try:
        gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        return
    st = kvm.stat()
    if st.st_gid != gid or (st.st_mode & 0o777) != 0o660:
        os.chown(kvm, -1, gid)
        kvm.chmod(0o660)


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _pids_in_mnt_ns(ns: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mnt_ns(int(entry)) == ns:
            pids.append(int(entry))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it holds nothing any more.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Libvirtd:
    """Context manager: ``with Libvirtd() as lv: rc, out = lv.define(xml)``."""

    def __init__(self, *, cache_dir: Path | None = DEFAULT_CACHE, start_timeout: float = 60.0) -> None:
        self.cache_dir = cache_dir
        self.start_timeout = start_timeout
        self.netns = f"hs-lv-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.workdir = Path()
        self.uri = ""
        self.startup_seconds = 0.0
        self._netns_created = False
        self._holder: subprocess.Popen[bytes] | None = None
        self._holder_mnt_ns: str | None = None
        self._daemons: dict[str, subprocess.Popen[bytes]] = {}
        self._seq = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        if os.geteuid() != 0:
            raise HarnessError("Libvirtd needs root (network/mount namespaces)")
        require_tools()
        fix_dev_kvm()
        self.workdir = Path(tempfile.mkdtemp(prefix="hs-libvirtd-"))
        for sub in (*_STATE_DIRS, "run"):
            (self.workdir / sub).mkdir()
        # Only the daemon configs: no host domains, networks or autostart links come along.
        for conf in Path("/etc/libvirt").glob("*.conf"):
            shutil.copy2(conf, self.workdir / "etc" / conf.name)
        if self.cache_dir is not None and self.cache_dir.is_dir():
            shutil.copytree(self.cache_dir, self.workdir / "cache", dirs_exist_ok=True)

        self._check(_run(["ip", "netns", "add", self.netns]), "ip netns add")
        self._netns_created = True
        self._check(_run(["ip", "-n", self.netns, "link", "set", "lo", "up"]), "ip link set lo up")
        self._start_holder()
        for daemon in ("virtlogd", "libvirtd"):
            # -p: the pid file goes to our /run/libvirt, never to the host's /run.
            self._daemons[daemon] = self._spawn_in_ns([daemon, "-p", f"/run/libvirt/{daemon}.pid"], daemon)
        self._wait_ready()
        self._save_cache()  # now, so a second instance in the same run starts warm too
        self.uri = f"qemu+unix:///system?socket={self.workdir}/run/libvirt-sock"
        self.startup_seconds = time.monotonic() - t0

    def _start_holder(self) -> None:
        ready = self.workdir / "holder.ready"
        binds = [f"mount --bind {self.workdir / sub} {target}" for sub, target in _STATE_DIRS.items()]
        script = "\n".join(
            [
                "set -e",
                # Private /run: pid files and sockets of a real libvirtd are out of reach.
                "mount -t tmpfs -o mode=755 hs-libvirtd-run /run",
                "mkdir -p /run/libvirt",
                f"mount --bind {self.workdir / 'run'} /run/libvirt",
                *binds,
                f"touch {ready}",
                "exec sleep infinity",
            ]
        )
        with open(self.workdir / "holder.log", "wb") as log:  # the child keeps its own copy of the fd
            self._holder = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{self.netns}",
                 "unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=CLEAN_ENV,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while not ready.exists():
            if self._holder.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"namespace holder failed: {self._read('holder.log')}")
            time.sleep(0.02)
        ns = _mnt_ns(self._holder.pid)
        # stop() kills every process in this namespace: it must never be the host's own.
        if ns is None or ns == _mnt_ns(os.getpid()):
            raise HarnessError(f"namespace holder is not in a private mount namespace ({ns})")
        self._holder_mnt_ns = ns

    def _spawn_in_ns(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        # Foreground daemons: nsenter execs in place, so Popen.pid is the daemon's own pid.
        with open(self.workdir / f"{name}.log", "wb") as log:
            return subprocess.Popen(
                self._ns_prefix() + argv,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=CLEAN_ENV,
            )  # fmt: skip

    def _wait_ready(self) -> None:
        sock = self.workdir / "run" / "libvirt-sock"
        deadline = time.monotonic() + self.start_timeout
        while True:
            for name, proc in self._daemons.items():
                if proc.poll() is not None:
                    raise HarnessError(f"{name} exited rc={proc.returncode}: {self._read_logs()}")
            # `version` also forces the QEMU capability probe, so later calls are fast.
            if sock.exists() and self.virsh("version", timeout=self.start_timeout)[0] == 0:
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"libvirtd not ready after {self.start_timeout}s: {self._read_logs()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill what we started, drop the namespace and temp dir; safe to call twice."""
        self._save_cache()
        victims = {p.pid for p in self._daemons.values()}
        if self._holder_mnt_ns is not None:
            # Anything in our private mount namespace descends from us (e.g. dnsmasq for a network).
            victims.update(_pids_in_mnt_ns(self._holder_mnt_ns))
        if self._netns_created:
            # QEMU runs in a mount namespace of its own (libvirt's qemu.conf `namespaces`) but in our
            # network namespace, which this instance created: a domain a test left running dies here too.
            victims.update(pids_in_netns(self.netns))
        if self._holder is not None:
            victims.discard(self._holder.pid)
        self._kill(victims)
        if self._holder is not None:
            self._kill({self._holder.pid})
        for proc in [*self._daemons.values(), *([self._holder] if self._holder else [])]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._daemons, self._holder, self._holder_mnt_ns = {}, None, None
        if self._netns_created:
            _run(["ip", "netns", "delete", self.netns])
            self._netns_created = False
        if self.workdir != Path() and self.workdir.is_dir():
            shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _kill(pids: set[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _save_cache(self) -> None:
        # Keep the QEMU capability cache for the next run (copy, then atomic rename per file).
        if self.cache_dir is None or self.workdir == Path():
            return
        src = self.workdir / "cache"
        for path in src.rglob("*.xml"):
            dest = self.cache_dir / path.relative_to(src)
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
                shutil.copy2(path, tmp)
                os.replace(tmp, dest)
            except OSError:
                pass  # a cache miss only costs time

    # -- helpers ---------------------------------------------------------------------------------

    def _ns_prefix(self) -> list[str]:
        if self._holder is None:
            raise HarnessError("libvirtd namespace is not running")
        return ["nsenter", "--target", str(self._holder.pid), "--mount", "--net"]

    def _read(self, name: str) -> str:
        try:
            return (self.workdir / name).read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def _read_logs(self) -> str:
        return f"virtlogd: {self._read('virtlogd.log')}\nlibvirtd: {self._read('libvirtd.log')}"

    @staticmethod
    def _check(result: tuple[int, str], what: str) -> None:
        if result[0] != 0:
            raise HarnessError(f"{what} failed: {result[1]}")

    def _xml_file(self, xml: str) -> Path:
        # nsenter --mount resets the cwd, so hand virsh an absolute path (workdir is visible inside).
        self._seq += 1
        path = self.workdir / f"input-{self._seq}.xml"
        path.write_text(xml)
        return path

    # -- API -------------------------------------------------------------------------------------

    def virsh(self, *args: str, timeout: float = 60) -> tuple[int, str]:
        """``virsh -q -c qemu:///system ARGS`` inside the daemon's namespaces; (rc, stdout+stderr)."""
        return _run([*self._ns_prefix(), "virsh", "-q", "-c", "qemu:///system", *args], timeout=timeout)

    def define(self, xml: str, *, validate: bool = True) -> tuple[int, str]:
        """``virsh define [--validate]``: with validate, RelaxNG errors come first (rc 1); without it,
        only libvirt's parser and driver checks run, as for the provider's DomainDefineXML."""
        return self.virsh("define", str(self._xml_file(xml)), *(["--validate"] if validate else []))

    def undefine(self, name: str) -> tuple[int, str]:
        # --nvram: libvirt refuses to undefine a domain with an nvram element otherwise.
        return self.virsh("undefine", "--nvram", name)

    def dumpxml(self, name: str) -> tuple[int, str]:
        return self.virsh("dumpxml", name)

    def canonical_machine(self, alias: str = "q35", arch: str = "x86_64") -> str:
        """What the provider's getCanonicalMachineName resolves ``alias`` to on this host."""
        rc, out = self.virsh("capabilities")
        self._check((rc, out), "virsh capabilities")
        caps = ElementTree.fromstring(out)
        for machine in caps.iterfind(f"guest/arch[@name='{arch}']/machine"):
            if machine.text == alias:
                return machine.get("canonical") or alias
        raise HarnessError(f"machine {alias!r} not offered for {arch}")
