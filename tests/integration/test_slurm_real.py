"""Tier four: the program's own SLURM files and scripts, run on a real SLURM cluster of namespaced nodes.

The stack below is planned under the mocks; every remote.Command it records is replayed over SSH in
dependency order (tests/integration/replay.py). Nodes are network/mount/pid namespaces over a Debian
rootfs with slurm-wlm, slurmdbd, munge and MariaDB, as a golden image would carry them; the controller's
state volume is a loop device seen at /dev/disk/by-id/virtio-hs-state, and GPU nodes see fake
/dev/nvidia0-1. What cannot run here: systemd (the scripts take their no-systemd path) and cgroup v2
(this host is cgroup v1, so the stack sets slurm.cgroup_plugin: cgroup/v1).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from config.topology import plan_nodes
from hyperscaler.plan import PlanResult, run_plan
from render.slurm import (
    GRES_NODE_FILE,
    render_cgroup_conf,
    render_controller_gres_node_file,
    render_gres_conf,
    render_slurm_conf,
)
from tests.integration.harness.nodes import Cluster
from tests.integration.harness.slurmctld_check import check_slurm_conf
from tests.integration.replay import Ran, give_nodes_their_host_keys, gpu_proof_cluster, host_keys, replay, snapshot
from tests.stacks import STACKS, loaded

pytestmark = pytest.mark.integration

NAMES = ["controller", "gpu-01", "gpu-02"]


def proof_stack(cluster: Cluster, tmp: Path, count: int = 2, **slurm: object) -> Path:
    """The proof cluster: a controller at .11 and `count` GPU nodes from .12, each with 2 (fake) GPUs."""
    cluster_cfg = gpu_proof_cluster(
        cluster,
        "proof",
        count,
        # This host mounts cgroup v1; Debian 12 guests get the default cgroup/v2.
        slurm={"cgroup_plugin": "cgroup/v1", "drain_timeout_s": 20, **slurm},
    )
    path = tmp / "Pulumi.proof.yaml"
    path.write_text(yaml.safe_dump({"config": {"hyperscaler:cluster": cluster_cfg}}))
    return path


@dataclass
class Proof:
    cluster: Cluster
    tmp: Path
    plan: PlanResult
    ran: list[Ran]

    def ssh(self, host: str, command: str, stdin: str | None, host_key: str) -> subprocess.CompletedProcess[str]:
        return self.cluster.ssh_pinned(host, command, host_key, stdin)

    def on(self, node: str, command: str) -> str:
        return self.cluster[node].ssh(command, timeout=120).stdout

    def snapshot(self) -> dict[str, str]:
        return snapshot(NAMES, self.on)


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proof]:
    tmp = tmp_path_factory.mktemp("proof")
    with Cluster(
        3, names=NAMES, fake_gpus={"gpu-01": 2, "gpu-02": 2}, disks={"controller": {"disk/by-id/virtio-hs-state": 256}}
    ) as cluster:
        result = run_plan(proof_stack(cluster, tmp))
        give_nodes_their_host_keys(cluster, result.records)
        p = Proof(cluster, tmp, result, [])
        started = time.monotonic()
        p.ran = replay(result.records, p.ssh)
        print(f"replayed {len(p.ran)} commands in {time.monotonic() - started:.1f}s")
        yield p


def test_every_node_is_idle(proof: Proof) -> None:
    out = proof.on("controller", "sinfo -h -N -o '%N %t' | sort -u")  # -N lists a node once per partition
    assert sorted(out.split("\n")[:-1]) == ["gpu-01 idle", "gpu-02 idle"], out


def test_srun_reaches_every_compute_node(proof: Proof) -> None:
    out = proof.on("controller", "srun -N2 sh -c 'echo $SLURMD_NODENAME' | sort")
    assert out.split() == ["gpu-01", "gpu-02"]


def test_gres_job_sees_its_gpus(proof: Proof) -> None:
    assert proof.on("controller", "srun -N1 --gres=gpu:h100:2 printenv CUDA_VISIBLE_DEVICES").strip() == "0,1"
    assert proof.on("controller", "srun -N1 --gres=gpu:1 printenv CUDA_VISIBLE_DEVICES").strip() == "0"


def test_over_request_fails(proof: Proof) -> None:
    for request in ("--gres=gpu:3", "--gres=gpu:a100:1", "--mem=4000"):
        proc = proof.cluster["controller"].ssh(f"srun {request} true", check=False, timeout=60)
        assert proc.returncode != 0, request
        assert "Requested node configuration is not available" in proc.stderr, proc.stderr


def test_accounting_lists_jobs(proof: Proof) -> None:
    proof.on("controller", "srun -N1 -J acct-probe true; srun -N1 -J acct-fail false || true")
    deadline = time.monotonic() + 30
    while True:
        out = proof.on("controller", "sacct -a -n -P -X -o JobName,State,ExitCode")
        if "acct-probe|COMPLETED|0:0" in out and "acct-fail|FAILED|1:0" in out:
            break
        assert time.monotonic() < deadline, out
        time.sleep(1)


def test_canary_passed(proof: Proof) -> None:
    canary = next(r for r in proof.ran if r.name.endswith("-controller-canary"))
    result = json.loads(canary.stdout.strip().splitlines()[-1])
    assert result["nodes"] == "gpu-01 gpu-02"
    assert result["gpu"] == {"h100": "0"}
    assert result["first_job_seconds"] >= 0


def test_state_lives_on_the_state_volume(proof: Proof) -> None:
    out = proof.on("controller", "findmnt -n -o SOURCE,TARGET /var/lib/hyperscaler/state")
    assert "/var/lib/hyperscaler/state" in out
    assert proof.on("controller", "ls /var/lib/hyperscaler/state").split() == ["lost+found", "mysql", "slurmctld"]


def test_second_run_changes_nothing(proof: Proof) -> None:
    before = proof.snapshot()
    replay(proof.plan.records, proof.ssh)
    assert proof.snapshot() == before


# Every secret's file and the directory holding it: (path, mode, owner, group).
SECRET_MODES = {
    "controller": [
        ("/etc/munge", "700", "munge", "munge"),
        ("/etc/munge/munge.key", "400", "munge", "munge"),
        ("/etc/slurm", "755", "root", "root"),
        ("/etc/slurm/slurmdbd.conf", "600", "slurm", "slurm"),
        ("/var/lib/hyperscaler/applied", "700", "root", "root"),
    ],
    "gpu-01": [("/etc/munge", "700", "munge", "munge"), ("/etc/munge/munge.key", "400", "munge", "munge")],
}


def test_secret_modes_after_two_runs(proof: Proof) -> None:
    """Runs after test_second_run_changes_nothing: the files have been written twice."""
    for node, expected in SECRET_MODES.items():
        paths = " ".join(p for p, *_ in expected)
        out = proof.on(node, f"stat -c '%n %a %U %G' {paths}").splitlines()
        assert [tuple(line.split()) for line in out] == expected, f"{node}: {out}"
    keys = {proof.on(n, "sha256sum < /etc/munge/munge.key") for n in NAMES}
    assert len(keys) == 1, "every node must hold the same munge key"


def test_partition_change_reconfigures_without_restart(proof: Proof) -> None:
    before = proof.snapshot()
    changed = run_plan(
        proof_stack(proof.cluster, proof.tmp, partitions=[{"name": "batch", "default": True, "max_time": "1:00:00"}])
    )
    old = {r.name: r.plain_inputs for r in proof.plan.records if r.type == "command:remote:Command"}
    rerun = {r.name for r in changed.records if r.type == "command:remote:Command" and r.plain_inputs != old[r.name]}
    assert rerun and not any(n.endswith(("-slurmctld", "-slurmd", "-munge")) for n in rerun), rerun
    replay(changed.records, proof.ssh, only=rerun)
    after = proof.snapshot()
    for node in NAMES:
        assert after[f"{node}:pids"] == before[f"{node}:pids"], f"a daemon restarted on {node}"
    assert proof.on("controller", "sinfo -h -o '%P %D'").split() == ["batch*", "2"]
    proof.plan = changed


def test_a_node_answering_with_another_key_is_refused(proof: Proof) -> None:
    """gpu-01 answers with its own key where the connection pins gpu-02's: nothing runs there."""
    rec = next(r for r in proof.plan.records if r.name.endswith("-gpu-01-munge"))
    other = host_keys(proof.plan.records)["gpu-02"][1]
    inputs = dict(rec.inputs, create="touch /tmp/impostor-ran")
    inputs["connection"] = dict(rec.plain_inputs["connection"], hostKey=" ".join(other.split()[:2]))
    with pytest.raises(AssertionError, match="Host key verification failed"):
        replay([dataclasses.replace(rec, inputs=inputs)], proof.ssh)
    assert proof.on("gpu-01", "ls /tmp/impostor-ran 2>/dev/null || echo absent").strip() == "absent"


def test_drain_before_removal_then_back(proof: Proof) -> None:
    """The controller's membership step for gpu-02: deleting it drains the node and waits for its job
    (before a VM is removed or replaced); creating it again returns the node to service."""
    drain = next(r for r in proof.plan.records if r.name.endswith("-controller-member-gpu-02"))
    job = proof.on("controller", "sbatch --parsable -w gpu-02 -J long --wrap 'sleep 4'").strip()
    deadline = time.monotonic() + 30
    while proof.on("controller", f"squeue -h -j {job} -o %T").strip() != "RUNNING":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    started = time.monotonic()
    replay([drain], proof.ssh, field="delete")
    assert time.monotonic() - started >= 1, "drain returned while the job still ran"
    assert "drain" in proof.on("controller", "sinfo -h -n gpu-02 -o '%T'") or "down" in proof.on(
        "controller", "sinfo -h -n gpu-02 -o '%T'"
    )
    assert proof.on("controller", "squeue -h -w gpu-02") == ""
    # The replacement VM boots and its slurmd registers (here: the same node's slurmd, started afresh).
    proof.on("gpu-02", "pid=$(cat /run/slurmd.pid); kill $pid; while [ -e /proc/$pid ]; do sleep 0.1; done")
    proof.on("gpu-02", ". /etc/default/slurmd && slurmd $SLURMD_OPTIONS")
    replay([drain], proof.ssh)
    deadline = time.monotonic() + 30
    while (state := proof.on("controller", "sinfo -h -N -n gpu-02 -o '%t'").strip()) != "idle":
        assert time.monotonic() < deadline, f"gpu-02 did not come back: {state}"
        time.sleep(0.5)


def test_a_drain_waits_for_a_slurmctld_that_does_not_answer(proof: Proof) -> None:
    """slurmctld too busy to answer (here: stopped with SIGSTOP, so connections open and then time out
    after MessageTimeout, as on an overloaded controller right after a reconfigure) while a node is
    drained before its VM goes: the drain waits for it, then drains, instead of taking the timeout for
    "no such node" and letting the VM go under its jobs."""
    drain = next(r for r in proof.plan.records if r.name.endswith("-controller-member-gpu-02"))
    timeout_s = int(proof.on("controller", "scontrol show config | awk '$1 == \"MessageTimeout\" {print $3}'"))
    pid = proof.on("controller", "cat /run/slurmctld.pid").strip()
    outcome: dict[str, object] = {}

    def run_drain() -> None:
        try:
            outcome["ran"] = replay([drain], proof.ssh, field="delete")
        except Exception as failure:  # reported below, in the test's thread
            outcome["failure"] = failure

    proof.on("controller", f"kill -STOP {pid}")
    worker = threading.Thread(target=run_drain)
    try:
        worker.start()
        time.sleep(2 * timeout_s + 5)  # every call the drain makes has timed out at least once by now
        assert worker.is_alive(), f"the drain returned while slurmctld did not answer: {outcome}"
    finally:
        proof.on("controller", f"kill -CONT {pid}")
        worker.join(timeout=180)
    assert "failure" not in outcome and not worker.is_alive(), outcome
    state = proof.on("controller", "sinfo -h -N -n gpu-02 -o '%t|%E'").splitlines()[0]
    assert state.split("|")[1] == "hyperscaler: node removed or replaced", state
    replay([drain], proof.ssh)  # and back to service
    deadline = time.monotonic() + 30
    while (state := proof.on("controller", "sinfo -h -N -n gpu-02 -o '%t'").split()[0]) != "idle":
        assert time.monotonic() < deadline, f"gpu-02 did not come back: {state}"
        time.sleep(0.5)


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stacks_boot_a_real_slurmctld(stack: str) -> None:
    spec = loaded(stack).spec
    nodes = plan_nodes(spec)
    gres = render_gres_conf(spec, nodes)
    extra = {"cgroup.conf": render_cgroup_conf(spec.slurm.cgroup_plugin)}
    if f"Include {GRES_NODE_FILE}" in gres:
        # slurmctld parses the included file too: the validator keeps its files beside slurm.conf, so the
        # include points there, at what the controller gets (an absolute path would be the host's own)
        gres = gres.replace(f"Include {GRES_NODE_FILE}", "Include node.conf")
        extra["node.conf"] = render_controller_gres_node_file()
    result = check_slurm_conf(render_slurm_conf(spec, nodes), {"gres.conf": gres, **extra})
    assert result.ok, result.log[-3000:]


def test_slurmctld_check_rejects_a_bad_conf() -> None:
    spec = loaded("dev").spec
    bad = render_slurm_conf(spec, plan_nodes(spec)).replace("SelectType=select/cons_tres", "SelectType=select/bogus")
    assert not check_slurm_conf(bad).ok
