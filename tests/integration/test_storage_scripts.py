"""The shared storage steps on real nodes, as far as they can run here (docs/storage.md says the rest).

Namespaced nodes stand in for the controller and a storage node; loop devices stand in for their
protected volumes, seen by the serial path a VM's udev gives them (/dev/disk/by-id/virtio-hs-...). The
program's own Commands from the plan are replayed over SSH with pinned host keys.

Proven: the data volume steps format once and then change nothing, keep what is written on the volume,
and refuse a disk that holds another file system; the third-party repository step installs a key only
with the pinned fingerprint (a real gpg, a key with a subkey) and changes nothing when run again; every
BeeGFS step, on a node without BeeGFS (no BeeGFS package is reachable from this machine), stops with a
clear message and leaves no state behind, for release 8 and 7.4.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from config.models.repository import AptRepository
from config.packages import NodePackages
from hyperscaler.mocks import Registration
from hyperscaler.plan import PlanResult, run_plan
from render.packages import render_packages_script
from render.remote import install_and_run_command
from tests.integration.harness.nodes import Cluster
from tests.integration.replay import COMMAND, give_nodes_their_host_keys, pinned_host_key, replay

pytestmark = pytest.mark.integration

NAMES = ["controller", "storage-01"]
DISKS = {
    "controller": {"disk/by-id/virtio-hs-state": 64},
    "storage-01": {
        "disk/by-id/virtio-hs-data-1": 320,
        "disk/by-id/virtio-hs-meta": 64,
        "disk/by-id/virtio-hs-spare": 64,
    },
}
# Everything a storage step may create or change on a node: the second run, or a refused one, must leave it.
STATE = (
    "find /etc/beegfs /etc/fstab /etc/apt/sources.list.d /usr/share/keyrings /srv/hyperscaler "
    "/var/lib/hyperscaler \\( -type f -o -type d \\) 2>/dev/null | sort | "
    'while read -r p; do if [ -f "$p" ]; then echo "$p $(sha256sum < "$p" | cut -c1-16)"; else echo "$p/"; fi; done; '
    "findmnt -rn -o TARGET,SOURCE,FSTYPE | grep -E '/srv/hyperscaler|/var/lib/hyperscaler' | sort; "
    'for d in /dev/disk/by-id/virtio-hs-*; do echo "$d $(blkid -p -o value -s UUID "$d" || true)"; done'
)


def storage_stack(cluster: Cluster, tmp: Path, version: str) -> Path:
    stack = {
        "name": "st",
        "hosts": [{"name": "hv", "cpu": {"cores_per_socket": 16}, "memory_mib": 65536}],
        "networks": {"management": {"cidr": f"{cluster.subnet}.0/24"}},
        "ssh": {"user": "root", "public_keys": [cluster.public_key]},
        "controller": {"vcpus": 1, "memory_mib": 2048, "address_offset": 11},
        # no node stands in for the compute node: its Commands are not replayed
        "compute": [{"name": "cpu", "count": 1, "vcpus": 1, "memory_mib": 2048, "address_offset": 13}],
        "storage": {"count": 1, "address_offset": 12, "data_disks_gib": [40], "beegfs": {"version": version}},
    }
    path = tmp / f"Pulumi.st{version.replace('.', '')}.yaml"
    path.write_text(yaml.safe_dump({"config": {"hyperscaler:cluster": stack}}))
    return path


@dataclass
class Live:
    cluster: Cluster
    tmp: Path
    plans: dict[str, PlanResult]

    def ssh(self, host: str, command: str, stdin: str | None, host_key: str) -> subprocess.CompletedProcess[str]:
        return self.cluster.ssh_pinned(host, command, host_key, stdin)

    def commands(self, version: str, *parts: str) -> list[Registration]:
        return [r for r in self.plans[version].records if r.type == COMMAND and any(p in r.name for p in parts)]

    def run(self, rec: Registration) -> subprocess.CompletedProcess[str]:
        inputs = rec.plain_inputs
        return self.ssh(inputs["connection"]["host"], str(inputs["create"]), inputs.get("stdin"), pinned_host_key(rec))

    def state(self, node: str) -> str:
        return self.cluster[node].ssh(STATE, timeout=60).stdout


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("storage")
    with Cluster(2, names=NAMES, disks=DISKS) as cluster:
        plans = {v: run_plan(storage_stack(cluster, tmp, v)) for v in ("8", "7.4")}
        give_nodes_their_host_keys(cluster, plans["8"].records)
        yield Live(cluster, tmp, plans)


def volume_steps(live: Live) -> set[str]:
    return {r.name for r in live.commands("8", "-volumes-")}


def test_volume_steps_format_once_then_change_nothing(live: Live) -> None:
    steps = volume_steps(live)
    assert steps == {"st-volumes-controller-state", "st-volumes-storage-01-data-1", "st-volumes-storage-01-meta"}
    replay(live.plans["8"].records, live.ssh, only=steps)
    storage = live.cluster["storage-01"]
    mounts = storage.ssh("findmnt -rn -o TARGET,FSTYPE | grep /srv/hyperscaler | sort").stdout.split("\n")
    assert mounts[:2] == ["/srv/hyperscaler/data-1 xfs", "/srv/hyperscaler/meta ext4"]  # BeeGFS targets are XFS
    storage.ssh("echo kept > /srv/hyperscaler/data-1/probe")
    before = {n: live.state(n) for n in NAMES}
    replay(live.plans["8"].records, live.ssh, only=steps)
    assert {n: live.state(n) for n in NAMES} == before
    assert storage.ssh("cat /srv/hyperscaler/data-1/probe").stdout == "kept\n"


def test_a_disk_with_another_file_system_is_refused(live: Live) -> None:
    storage = live.cluster["storage-01"]
    script = "/usr/local/libexec/hyperscaler/data-volume.sh"
    storage.ssh(f"test -x {script}")  # installed by the volume steps
    storage.ssh("mkfs.ext4 -q /dev/disk/by-id/virtio-hs-spare")
    uuid = storage.ssh("blkid -p -o value -s UUID /dev/disk/by-id/virtio-hs-spare").stdout
    proc = storage.ssh(f"{script} /dev/disk/by-id/virtio-hs-spare /srv/hyperscaler/spare xfs hs-spare", check=False)
    assert proc.returncode != 0
    assert "holds ext4, not xfs: refusing to touch it" in proc.stderr
    assert storage.ssh("blkid -p -o value -s UUID /dev/disk/by-id/virtio-hs-spare").stdout == uuid
    assert "virtio-hs-spare" not in storage.read_file("/etc/fstab")


@pytest.mark.parametrize("version", ["8", "7.4"])
def test_beegfs_steps_stop_cleanly_without_beegfs(live: Live, version: str) -> None:
    replay(live.plans[version].records, live.ssh, only=volume_steps(live))  # idempotent: mounted already
    # the files BeeGFS's steps need are pushed (auth file, certificate, key, configuration)
    pushes = [
        r
        for r in live.commands(version, "-beegfs-")
        if "hyperscaler-file path=/etc/beegfs/" in str(r.plain_inputs["create"])
    ]
    for rec in pushes:
        if rec.plain_inputs["connection"]["host"] in {n.address for n in live.cluster.nodes}:
            assert live.run(rec).returncode == 0, rec.name
    steps = [
        r
        for r in live.commands(version, "-mgmtd-open", "-servers", "-mgmtd-close", "-controller-client", "-layout")
        if r.plain_inputs["connection"]["host"] in {n.address for n in live.cluster.nodes}
    ]
    assert {r.name.rsplit("-", 1)[-1] for r in steps} >= {"open", "servers", "close", "client", "layout"}
    for rec in steps:
        node = live.cluster.node_at(rec.plain_inputs["connection"]["host"]).name
        before = live.state(node)
        proc = live.run(rec)
        assert proc.returncode != 0, f"{rec.name} succeeded without BeeGFS"
        if rec.name.endswith("-layout"):  # it needs the mount before the tools
            assert "BeeGFS is not mounted at /shared" in proc.stderr, proc.stderr
        else:
            assert f"BeeGFS {version} is not installed here" in proc.stderr and "Nothing was changed." in proc.stderr
        assert live.state(node) == before, f"{rec.name} changed {node}"


def gpg_key(tmp: Path) -> tuple[str, str]:
    """A fresh signing key with an encryption subkey, as real repositories' keys have: (armored, fpr)."""
    home = tmp / "gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        gen = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key"]
        subprocess.run(
            [*gen, "Test Repo <repo@example.org>", "ed25519", "sign", "never"], check=True, env=env, capture_output=True
        )
        listing = subprocess.run(
            ["gpg", "--with-colons", "--list-keys"], check=True, env=env, capture_output=True, text=True
        )
        fpr = next(line.split(":")[9] for line in listing.stdout.splitlines() if line.startswith("fpr:"))
        subprocess.run(
            [
                "gpg",
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-add-key",
                fpr,
                "cv25519",
                "encr",
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        export = ["gpg", "--armor", "--export", fpr]
        armored = subprocess.run(export, check=True, env=env, capture_output=True, text=True)
        return armored.stdout, fpr
    finally:
        # gpg started an agent for this home: stop it (gpgconf signals only that home's agent), and make
        # sure nothing of it is left running.
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], env=env, capture_output=True)
        left = subprocess.run(["pgrep", "-f", f"gpg-agent.*{home}"], capture_output=True, text=True).stdout
        assert not left.strip(), f"gpg-agent for {home} still runs: {left}"


def test_repository_key_must_have_the_pinned_fingerprint(live: Live) -> None:
    assert subprocess.run(["which", "gpg"], capture_output=True).returncode == 0, "gpg is missing: run `make deps`"
    key, fpr = gpg_key(live.tmp)
    node = live.cluster["storage-01"]

    def step(fingerprint: str) -> subprocess.CompletedProcess[str]:
        repo = AptRepository(
            name="site", url="https://mirror.example.org/beegfs", suite="bookworm", components=["non-free"],
            key=key, key_fingerprint=fingerprint,
        )  # fmt: skip
        script = render_packages_script(NodePackages((), repo, ()))
        return node.ssh(install_and_run_command(script, "root", ()), input=script.content, check=False)

    before = live.state("storage-01")
    wrong = step("0" * 40)
    assert wrong.returncode != 0 and f"has fingerprint {fpr}, not the pinned {'0' * 40}: refusing it" in wrong.stderr
    assert live.state("storage-01") == before  # no keyring, no sources list
    assert step(fpr).returncode == 0
    listed = node.read_file("/etc/apt/sources.list.d/hyperscaler-site.list")
    keyring = "/usr/share/keyrings/hyperscaler-site.gpg"
    assert listed == f"deb [signed-by={keyring}] https://mirror.example.org/beegfs bookworm non-free\n"
    shown = node.ssh("gpg --show-keys --with-colons /usr/share/keyrings/hyperscaler-site.gpg").stdout
    assert f"fpr:::::::::{fpr}:" in shown
    installed = live.state("storage-01")
    again = step(fpr)
    assert again.returncode == 0 and "signing key" not in again.stderr
    assert live.state("storage-01") == installed
