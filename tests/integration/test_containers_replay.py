"""The program's own container Commands, replayed on namespaced Debian nodes (tests/integration/replay.py).

A controller and one compute node with `containers.docker.compute: true`: every remote.Command the plan
records runs over SSH in dependency order, pinned to the host key the plan's cloud-init gives each node,
so Docker and the registry are installed, configured and started by the program's own steps, on their
no-systemd paths (the harness has no systemd). Then:

* an image made on the controller with `docker import` of a tiny local rootfs (no registry on the internet
  is reachable) is pushed to the cluster registry over TLS, trusted through the certificate the program made
  (no `insecure-registries`), and a SLURM job on the compute node pulls it from there and runs it;
* a second run changes nothing (daemon pids, managed files);
* slurmd runs with the rendered plugstack.conf (Pyxis `optional`) although Pyxis is absent, and the same
  file with `required` makes srun fail (the check can fail);
* the Enroot and Apptainer steps, whose software no registry here has, stop with their clear message.

dockerd runs inside each node's own network, mount and pid namespaces: its iptables rules, /run/docker.pid,
docker.sock and /var/lib/docker are the node's, never the host's. The node's root file system is an
overlayfs, on which overlay2 cannot stack: dockerd, with no storage driver in daemon.json, falls back to vfs
by itself (asserted below; a VM's ext4 root gets overlay2).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hyperscaler.mocks import Registration
from hyperscaler.plan import PlanResult, run_plan
from tests.integration.harness.dockerd import host_state
from tests.integration.harness.nodes import Cluster
from tests.integration.replay import (
    COMMAND,
    DAEMON_PIDS,
    MANAGED_FILES,
    give_nodes_their_host_keys,
    replay,
    replay_change,
)

pytestmark = pytest.mark.integration

NAMES = ["controller", "cpu-01"]
# No package for these on any registry here (docs/containers.md): their steps are run on their own below.
UNAVAILABLE = ("-enroot", "-apptainer")
IMAGE = "hs/hello:1"
CONTAINER_PIDS = "for p in dockerd containerd docker-registry; do echo $p $(pgrep -x $p | sort | tr '\\n' ' '); done"
CONTAINER_FILES = (
    "find /etc/docker /etc/hyperscaler /usr/local/share/ca-certificates /etc/ssl/certs/ca-certificates.crt "
    "/usr/local/share/hyperscaler /usr/local/bin -type f -exec sha256sum {} + 2>/dev/null | sort"
)


def containers_stack(cluster: Cluster, tmp: Path, live_restore: bool = True, port: int = 5000) -> Path:
    cfg = {
        "name": "ctr",
        "hosts": [{"name": "hv", "cpu": {"cores_per_socket": 16}, "memory_mib": 65536}],
        "networks": {"management": {"cidr": f"{cluster.subnet}.0/24"}},
        "ssh": {"user": "root", "public_keys": [cluster.public_key]},
        "controller": {"vcpus": 1, "memory_mib": 2048, "address_offset": 11},
        "compute": [{"name": "cpu", "count": 1, "vcpus": 2, "memory_mib": 2048, "address_offset": 12}],
        "storage": None,
        "slurm": {"cgroup_plugin": "cgroup/v1"},  # this host mounts cgroup v1
        "containers": {
            "enabled": True,
            "docker": {"compute": True, "live_restore": live_restore},
            "registry": {"port": port},
        },
    }
    path = tmp / "Pulumi.ctr.yaml"
    path.write_text(yaml.safe_dump({"config": {"hyperscaler:cluster": cfg}}))
    return path


def runnable(records: list[Registration]) -> list[Registration]:
    return [r for r in records if r.type != COMMAND or not r.name.endswith(UNAVAILABLE)]


@dataclass
class Replayed:
    cluster: Cluster
    tmp: Path
    plan: PlanResult
    registry: str
    seconds: float
    token: str = ""  # what the pushed image carries

    def ssh(self, host: str, command: str, stdin: str | None, host_key: str) -> subprocess.CompletedProcess[str]:
        return self.cluster.ssh_pinned(host, command, host_key, stdin)

    def on(self, node: str, command: str, timeout: float = 120) -> str:
        return self.cluster[node].ssh(command, timeout=timeout).stdout

    def snapshot(self) -> dict[str, str]:
        state = {}
        for node in NAMES:
            for what, command in (
                ("pids", DAEMON_PIDS),
                ("files", MANAGED_FILES),
                ("container-pids", CONTAINER_PIDS),
                ("container-files", CONTAINER_FILES),
            ):
                state[f"{node}:{what}"] = self.on(node, command)
        return state


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    tmp = tmp_path_factory.mktemp("containers")
    host_before = host_state()
    with Cluster(2, names=NAMES, disks={"controller": {"disk/by-id/virtio-hs-state": 256}}) as cluster:
        plan = run_plan(containers_stack(cluster, tmp))
        registry = plan.outputs["registry"]
        give_nodes_their_host_keys(cluster, plan.records)
        started = time.monotonic()
        p = Replayed(cluster, tmp, plan, str(registry), 0.0)
        replay(runnable(plan.records), p.ssh)
        p.seconds = time.monotonic() - started
        print(f"replayed the container stack's Commands in {p.seconds:.1f}s")
        yield p
    # Every dockerd ran in a node's namespaces: the host's FORWARD policy and Docker paths are as they were.
    assert host_state() == host_before


def test_the_steps_started_docker_and_the_registry(replayed: Replayed) -> None:
    for node in NAMES:
        assert replayed.on(node, "pgrep -x dockerd").strip(), f"no dockerd on {node}"
        assert replayed.on(node, "docker info -f '{{.LoggingDriver}} {{.LiveRestoreEnabled}}'").split() == [
            "json-file",
            "true",
        ]
    assert replayed.on("controller", "pgrep -x docker-registry").strip()
    owner = replayed.on("controller", "ps -o user= -p $(pgrep -x docker-registry)").strip()
    assert owner == "docker-registry"
    # Images land on the protected state volume, not the root disk.
    assert replayed.on("controller", "findmnt -n -o TARGET --target /var/lib/hyperscaler/state/registry").strip() == (
        "/var/lib/hyperscaler/state"
    )


def test_dockerd_fell_back_to_vfs_on_the_overlay_root(replayed: Replayed) -> None:
    """The harness node's / is an overlayfs (a VM's is ext4): overlay2 cannot stack on it (the kernel refuses
    the mount), and dockerd, given no storage driver, picks vfs by itself. The program sets none, so nothing
    here is a test-only setting; if this ever changes (a driver in daemon.json, another root), this test
    says so."""
    for node in NAMES:
        assert replayed.on(node, "findmnt -n -o FSTYPE /").strip() == "overlay"
        assert replayed.on(node, "docker info -f '{{.Driver}}'").strip() == "vfs", node
        assert "storage-driver" not in replayed.on(node, "cat /etc/docker/daemon.json")
        # dockerd's own log says why: overlay2 tried first, and the kernel refused the mount.
        log = replayed.on(node, "grep -e 'storage-driver=overlay2' -e 'graphdriver' /var/log/hyperscaler-dockerd.log")
        assert 'msg="failed to mount overlay: invalid argument" storage-driver=overlay2' in log, log
        assert "graphdriver(s)=vfs" in log, log


def test_no_node_trusts_the_registry_insecurely(replayed: Replayed) -> None:
    for node in NAMES:
        assert replayed.on(node, "docker info -f '{{json .RegistryConfig.InsecureRegistryCIDRs}}'").strip() == (
            '["127.0.0.0/8"]'
        )
        assert replayed.on(node, f"ls /etc/docker/certs.d/{replayed.registry}").split() == ["ca.crt"]
    # The system store (Enroot's and Apptainer's) trusts it too: curl with no --cacert.
    assert replayed.on("cpu-01", f"curl -fsS https://{replayed.registry}/v2/").strip() == "{}"
    # A client that does not trust the program's certificate is refused.
    proc = replayed.cluster["cpu-01"].ssh(f"curl -fsS --cacert /dev/null https://{replayed.registry}/v2/", check=False)
    assert proc.returncode != 0


def test_an_image_pushed_to_the_registry_runs_in_a_slurm_job(replayed: Replayed) -> None:
    token = replayed.token = secrets.token_hex(8)
    ref = f"{replayed.registry}/{IMAGE}"
    started = time.monotonic()
    # A tiny rootfs from the controller's own files (bash and the libraries it loads), plus a token that
    # only this image carries; `docker import` makes an image of it, `docker push` sends it over TLS.
    replayed.on(
        "controller",
        "set -e; rm -rf /tmp/img && mkdir -p /tmp/img/etc; "
        f"echo {token} > /tmp/img/etc/token; "
        "for f in /bin/bash $(ldd /bin/bash | grep -o '/[^ ]*'); do mkdir -p /tmp/img$(dirname $f); "
        "cp -L $f /tmp/img$f; done; "
        f"tar -C /tmp/img -c . | docker import - {ref} >/dev/null; docker push {ref} >/dev/null; "
        f"docker rmi {ref} >/dev/null; rm -rf /tmp/img",
    )
    # The compute node has never seen it; the job pulls it from the registry.
    assert replayed.cluster["cpu-01"].ssh(f"docker image inspect {ref}", check=False).returncode != 0
    out = replayed.on(
        "controller",
        f"srun -N1 -w cpu-01 docker run --rm --network none -e SLURMD_NODENAME {ref} /bin/bash -c "
        "'echo $(< /etc/token) on $SLURMD_NODENAME'",
    )
    print(f"import, push, pull and run in a job: {time.monotonic() - started:.1f}s")
    assert out.strip() == f"{token} on cpu-01", out
    assert replayed.on("cpu-01", f"docker image inspect -f '{{{{.Id}}}}' {ref}").startswith("sha256:")


def test_second_run_changes_nothing(replayed: Replayed) -> None:
    before = replayed.snapshot()
    started = time.monotonic()
    replay(runnable(replayed.plan.records), replayed.ssh)
    print(f"second run: {time.monotonic() - started:.1f}s")
    assert replayed.snapshot() == before


def test_slurmd_runs_with_plugstack_while_pyxis_is_absent(replayed: Replayed) -> None:
    plugstack = replayed.on("controller", "cat /etc/slurm/plugstack.conf")
    line = next(line for line in plugstack.splitlines() if not line.startswith("#"))
    assert line.startswith("optional /usr/local/lib/slurm/spank_pyxis.so "), plugstack
    plugin = line.split()[1]
    for node in NAMES:
        assert replayed.cluster[node].ssh(f"test -e {plugin}", check=False).returncode == 1, node
    # configless: cpu-01's slurmd fetched plugstack.conf with slurm.conf, and runs with it.
    cached = replayed.on("cpu-01", "cat $(find /var/spool/slurmd /run/slurm -name plugstack.conf 2>/dev/null)")
    assert cached == plugstack
    assert replayed.on("cpu-01", "pgrep -x slurmd").strip()
    assert replayed.on("controller", "srun -N1 -w cpu-01 hostname").strip() == "cpu-01"
    # The same file saying `required` is fatal: srun refuses to run (what `optional` avoids).
    proc = replayed.cluster["controller"].ssh(
        "set -e; d=$(mktemp -d); sed 's/^optional /required /' /etc/slurm/plugstack.conf > $d/plugstack.conf; "
        "sed '/^PlugStackConfig=/d' /etc/slurm/slurm.conf > $d/slurm.conf; "
        "echo PlugStackConfig=$d/plugstack.conf >> $d/slurm.conf; "
        "SLURM_CONF=$d/slurm.conf srun -N1 -w cpu-01 hostname; rc=$?; rm -rf $d; exit $rc",
        check=False,
        timeout=60,
    )
    assert proc.returncode != 0, proc.stdout
    assert "spank_pyxis.so" in proc.stderr, proc.stderr


def test_enroot_and_apptainer_steps_stop_with_their_message(replayed: Replayed) -> None:
    for step in ("enroot", "apptainer"):
        rec = next(r for r in replayed.plan.records if r.type == COMMAND and r.name.endswith(f"-cpu-01-{step}"))
        with pytest.raises(AssertionError, match=f"containers.{step}.repository is null"):
            replay([rec], replayed.ssh)


def test_a_container_change_restarts_docker_and_the_registry_only(replayed: Replayed) -> None:
    """live_restore off and the registry moved to 5001, replayed as `pulumi up` runs it: dockerd restarts on
    both nodes with the new daemon.json, the registry restarts on its new port and still holds the image
    (the state volume), every node trusts the new address; SLURM's daemons keep running."""
    before = replayed.snapshot()
    changed = run_plan(containers_stack(replayed.cluster, replayed.tmp, live_restore=False, port=5001))
    started = time.monotonic()
    change = replay_change(runnable(replayed.plan.records), runnable(changed.records), replayed.ssh)
    print(f"container change: {time.monotonic() - started:.1f}s")
    ran = {r.name.removeprefix("ctr-containers-") for r in change.ran}
    assert {"controller-docker", "cpu-01-docker", "controller-registry"} <= ran, ran
    # Docker's trust moves to the new address; the certificate is the same, so the system store is not touched.
    assert any(n.startswith("cpu-01-etc-docker-certs-d-") and n.endswith("-5001-ca-crt") for n in ran), ran
    assert "cpu-01-container-trust" not in ran
    assert not any(n.endswith(("-slurmctld", "-slurmd", "-munge")) for n in ran), ran
    replayed.plan = changed
    after = replayed.snapshot()
    for node in NAMES:
        assert after[f"{node}:pids"] == before[f"{node}:pids"], f"a SLURM daemon restarted on {node}"
        assert after[f"{node}:container-pids"].split("\n")[0] != before[f"{node}:container-pids"].split("\n")[0]
        assert replayed.on(node, "docker info -f '{{.LiveRestoreEnabled}}'").strip() == "false"
    old_registry, replayed.registry = replayed.registry, str(changed.outputs["registry"])
    assert replayed.registry.endswith(":5001") and replayed.registry != old_registry
    assert replayed.cluster["cpu-01"].ssh(f"curl -fsS https://{old_registry}/v2/", check=False).returncode != 0
    for node in NAMES:  # Docker no longer trusts the old address
        assert replayed.on(node, "ls /etc/docker/certs.d/*/ca.crt").split() == [
            f"/etc/docker/certs.d/{replayed.registry}/ca.crt"
        ]
    assert any(r.name.endswith("-5000-ca-crt") for r in change.deleted), change.deleted
    out = replayed.on(
        "controller",
        f"srun -N1 -w cpu-01 docker run --rm --network none {replayed.registry}/{IMAGE} /bin/bash -c "
        "'echo $(< /etc/token)'",
    )
    assert out.strip() == replayed.token


def test_a_daemon_json_dockerd_refuses_is_put_back(replayed: Replayed) -> None:
    """Docker 20.10 has no --validate: the restart is the check. A daemon.json dockerd refuses (a misspelt
    key) fails the step quickly, and the node runs again with the file it had."""
    node = replayed.cluster["cpu-01"]
    step = next(r for r in replayed.plan.records if r.type == COMMAND and r.name.endswith("-cpu-01-docker"))
    good = node.read_file("/etc/docker/daemon.json")
    staged = "/etc/hyperscaler/docker/daemon.json"
    assert node.read_file(staged) == good
    node.put_file(staged, json.dumps({**json.loads(good), "log-opt": {"max-size": "1m"}}, indent=2))
    started = time.monotonic()
    with pytest.raises(AssertionError, match="the previous one is back in place"):
        replay([step], replayed.ssh)
    assert time.monotonic() - started < 30, "the refusal should not wait for the 60 s time-out"
    assert node.read_file("/etc/docker/daemon.json") == good
    assert replayed.on("cpu-01", "docker info -f '{{.LiveRestoreEnabled}}'").strip() == "false"
    # The rendered file again: the step goes through, and with dockerd up and the file unchanged, restarts nothing.
    node.put_file(staged, good)
    pid = replayed.on("cpu-01", "pgrep -x dockerd")
    replay([step], replayed.ssh)
    assert replayed.on("cpu-01", "pgrep -x dockerd") == pid
