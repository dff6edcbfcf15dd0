"""Changing a running cluster, on real SLURM: the program's own Commands replayed as `pulumi up` would run
an update (tests/integration/replay.py: changed Commands in dependency order, then deletes of removed
ones), with jobs running and queued.

Four namespaced nodes are started; the stack uses two or three of them as compute nodes. Proves that
adding a compute node drains nothing, removing one drains only that node, and a restart-class change
(one that restarts slurmctld and slurmd) keeps queued and running jobs.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hyperscaler.plan import PlanResult, run_plan
from tests.integration.harness.nodes import Cluster
from tests.integration.replay import Change, give_nodes_their_host_keys, replay, replay_change
from tests.integration.test_slurm_real import proof_stack

pytestmark = pytest.mark.integration

NAMES = ["controller", "gpu-01", "gpu-02", "gpu-03"]
DRAINED_RE = re.compile(r"update_node: node (\S+) state set to DRAIN")


@dataclass
class Live:
    cluster: Cluster
    tmp: Path
    plan: PlanResult

    def on(self, node: str, command: str) -> str:
        return self.cluster[node].ssh(command, timeout=300).stdout

    def ssh(self, host: str, command: str, stdin: str | None, host_key: str) -> subprocess.CompletedProcess[str]:
        return self.cluster.ssh_pinned(host, command, host_key, stdin)

    def apply(self, count: int, **slurm: object) -> Change:
        """Plan the changed stack and replay the update from the current plan to it."""
        tmp = self.tmp / f"v{time.monotonic_ns()}"
        tmp.mkdir()
        after = run_plan(proof_stack(self.cluster, tmp, count=count, **slurm))
        change = replay_change(self.plan.records, after.records, self.ssh)
        self.plan = after
        return change

    def job(self, node: str, seconds: int, *extra: str) -> str:
        return self.on("controller", f"sbatch --parsable -w {node} {' '.join(extra)} --wrap 'sleep {seconds}'").strip()

    def state(self, job: str) -> str:
        return self.on("controller", f"squeue -h -j {job} -o %T").strip()

    def wait_running(self, job: str) -> None:
        deadline = time.monotonic() + 60
        while self.state(job) != "RUNNING":
            assert time.monotonic() < deadline, f"job {job} never started: {self.state(job)!r}"
            time.sleep(0.2)

    def drained_since(self, offset: int) -> list[str]:
        log = self.on("controller", f"tail -c +{offset + 1} /var/log/slurm/slurmctld.log")
        return sorted(set(DRAINED_RE.findall(log)))

    def log_size(self) -> int:
        return int(self.on("controller", "stat -c %s /var/log/slurm/slurmctld.log"))

    def node_states(self) -> dict[str, str]:
        out = self.on("controller", "sinfo -h -N -o '%N %T' | sort -u")
        return dict(line.split() for line in out.splitlines())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("changes")
    fake = {n: 2 for n in NAMES[1:]}
    with Cluster(4, names=NAMES, fake_gpus=fake, disks={"controller": {"disk/by-id/virtio-hs-state": 256}}) as cluster:
        first = tmp / "v0"
        first.mkdir()
        plan = run_plan(proof_stack(cluster, first, count=3))
        give_nodes_their_host_keys(cluster, plan.records)  # gpu-03's too, for when it joins
        plan = run_plan(proof_stack(cluster, first, count=2))
        live = Live(cluster, tmp, plan)
        replay(plan.records, live.ssh)
        yield live


# Every file the program manages on a node, with its content hash and modification time.
MANAGED = (
    "find /etc/munge /etc/default/slurmd /etc/slurm /usr/local/libexec/hyperscaler /var/lib/hyperscaler/applied "
    "-type f -printf '%p %T@ ' -exec sha256sum {} \\; 2>/dev/null | sort"
)


def test_adding_a_compute_node_touches_only_it_and_the_controller(live: Live) -> None:
    """Issue 15: the running job elsewhere survives, no node is drained, nothing on gpu-01 or gpu-02 is
    rewritten (content and mtime), no SSH session reaches them, and the new node comes up idle."""
    running = live.job("gpu-01", 600)  # whole node: the default job takes all its memory
    live.wait_running(running)
    offset = live.log_size()
    before = {n: live.on(n, MANAGED) for n in ("gpu-01", "gpu-02")}
    slurmd = {n: live.on(n, "pgrep -x slurmd") for n in ("gpu-01", "gpu-02")}
    change = live.apply(count=3)
    hosts = {live.cluster.node_at(r.host).name for r in change.ran}
    assert hosts == {"controller", "gpu-03"}, hosts
    assert {n: live.on(n, MANAGED) for n in before} == before, "files on existing nodes were rewritten"
    assert {n: live.on(n, "pgrep -x slurmd") for n in slurmd} == slurmd, "an existing slurmd restarted"
    assert live.drained_since(offset) == [], "adding gpu-03 drained existing nodes"
    # a job across an old and the new node: the old slurmd learnt of gpu-03 without a restart
    out = live.on("controller", "srun -N2 -w gpu-02,gpu-03 sh -c 'echo $SLURMD_NODENAME' | sort")
    assert out.split() == ["gpu-02", "gpu-03"], out
    assert live.state(running) == "RUNNING"
    states = live.node_states()
    assert states["gpu-03"] == "idle" and states["gpu-02"] == "idle", states
    assert states["gpu-01"] in ("mixed", "allocated"), states


def test_restart_class_change_keeps_queued_and_running_jobs(live: Live) -> None:
    running = next(j for j in live.on("controller", "squeue -h -t R -o %i").split())
    queued = live.job("gpu-02", 60, "--begin=now+3600")  # held in the queue until an hour from now
    assert live.state(queued) == "PENDING"
    before = live.on("controller", "pgrep -x slurmctld").strip()
    offset = live.log_size()
    change = live.apply(count=3, options={"MpiDefault": "pmi2"})  # MpiDefault needs slurmctld and slurmd restarted
    assert any(r.name.endswith("controller-slurmctld") for r in change.ran), [r.name for r in change.ran]
    assert live.on("controller", "pgrep -x slurmctld").strip() != before, "slurmctld was not restarted"
    assert live.drained_since(offset) == []
    assert live.state(running) == "RUNNING"
    assert live.state(queued) == "PENDING"
    live.on("controller", f"scancel {queued}")


def test_removing_a_compute_node_drains_only_that_node(live: Live) -> None:
    running = next(j for j in live.on("controller", "squeue -h -t R -o %i").split())
    leaving = live.job("gpu-03", 4)
    live.wait_running(leaving)
    offset = live.log_size()
    started = time.monotonic()
    live.apply(count=2, options={"MpiDefault": "pmi2"})
    assert time.monotonic() - started >= 1, "the removal did not wait for the job on gpu-03"
    assert live.drained_since(offset) == ["gpu-03"]
    assert live.on("controller", f"sacct -n -X -j {leaving} -o State").split() == ["COMPLETED"]
    assert live.state(running) == "RUNNING"
    assert "gpu-03" not in live.node_states()
    live.on("controller", f"scancel {running}")
