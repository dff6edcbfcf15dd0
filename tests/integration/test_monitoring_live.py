"""The monitoring stack live: the program's own Commands, replayed on namespaced nodes, start node-exporter
everywhere and Prometheus, Alertmanager and the SLURM collector on the controller; then alerts fire.

The stack sets short, test-only intervals as stack settings (scrape every 2 s, rules every 1 s, alerts
after 2 s), so every wait below is bounded by seconds. SLURM's Commands are replayed too: the collector
reads a real slurmctld. A static metrics file served on each GPU node's management address stands in for
the DCGM exporter (the container cannot run here): gpu-01's reports trouble, gpu-02's is healthy.
Alertmanager's receiver is a webhook on the harness host, so delivery is proven, not only routing.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from config.monitoring_facts import DCGM_EXPORTER_PORT
from hyperscaler.mocks import Registration
from hyperscaler.plan import PlanResult, run_plan
from tests.integration.harness._util import CLEAN_ENV
from tests.integration.harness.nodes import PINNED_SSH_OPTIONS, Cluster
from tests.integration.replay import (
    COMMAND,
    give_nodes_their_host_keys,
    gpu_proof_cluster,
    host_keys,
    replay,
    replay_change,
)

pytestmark = pytest.mark.integration

NAMES = ["controller", "gpu-01", "gpu-02", "gpu-03"]  # gpu-03 joins in the last test
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "monitoring"
STAND_IN = {"gpu-01": "dcgm-failing.prom", "gpu-02": "dcgm-healthy.prom"}
WEBHOOK_PORT = 9099
T = TypeVar("T")


def live_stack(cluster: Cluster, tmp: Path, count: int) -> Path:
    cfg = gpu_proof_cluster(
        cluster,
        "mon",
        count,
        slurm={"cgroup_plugin": "cgroup/v1"},  # this host mounts cgroup v1
        monitoring={
            "enabled": True,
            "scrape_interval_s": 2,
            "evaluation_interval_s": 1,
            "alerts": {
                "pending_s": 2,
                "receiver": "webhook",
                "webhook": {"url": f"http://{cluster.host_address}:{WEBHOOK_PORT}/hook"},
            },
        },
    )
    path = tmp / "Pulumi.mon.yaml"
    path.write_text(yaml.safe_dump({"config": {"hyperscaler:cluster": cfg}}))
    return path


def monitoring_only(records: list[Registration]) -> list[Registration]:
    return [r for r in records if r.type != COMMAND or "-monitoring-" in r.name]


def eventually(
    what: str, probe: Callable[[], T | None], timeout: float = 60, diagnose: Callable[[], str] | None = None
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            seen = f"\n{diagnose()}" if diagnose else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{seen}")
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Webhook(ThreadingHTTPServer):
    """Alertmanager's receiver: keeps every notification it is sent."""

    def __init__(self, address: str) -> None:
        self.received: list[dict[str, Any]] = []
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                webhook.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__((address, WEBHOOK_PORT), Handler)


@dataclass
class Live:
    cluster: Cluster
    tmp: Path
    plan: PlanResult
    webhook: Webhook
    ports: dict[str, int] = field(default_factory=dict)  # UI name -> local port of its SSH tunnel

    def ssh(self, host: str, command: str, stdin: str | None, host_key: str) -> subprocess.CompletedProcess[str]:
        return self.cluster.ssh_pinned(host, command, host_key, stdin)

    def on(self, node: str, command: str) -> str:
        return self.cluster[node].ssh(command, timeout=120).stdout

    def api(self, ui: str, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.ports[ui]}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)

    def query(self, promql: str) -> list[dict[str, Any]]:
        return list(self.api("prometheus", "/api/v1/query", query=promql)["data"]["result"])

    def alerts(self, name: str) -> list[dict[str, str]]:
        """The labels of every active alert `name` Alertmanager holds."""
        return [a["labels"] for a in self.api("alertmanager", "/api/v2/alerts") if a["labels"]["alertname"] == name]

    def pids(self) -> dict[str, str]:
        """The pid of every monitoring daemon (pgrep fails when one is missing)."""
        wanted = {node: ["prometheus-node"] for node in NAMES[:3]}  # comm keeps 15 characters of the name
        wanted["controller"] += ["prometheus", "prometheus-aler"]
        pids = {f"{n}:{d}": self.on(n, f"pgrep -x {d}").strip() for n, daemons in wanted.items() for d in daemons}
        # The loop the step started, by the pidfile it made: `pgrep -f` would also match the loop's own
        # subshells while it collects, so the count of pids depended on when it was asked.
        pids["controller:collector"] = self.on(
            "controller",
            "pid=$(cat /run/slurm-metrics.pid) && "
            "tr '\\0' ' ' < /proc/$pid/cmdline | grep -q 'slurm-metrics.sh loop' && echo $pid",
        ).strip()
        return pids


def open_tunnel(live: Live, ui: str, stack: list[subprocess.Popen[bytes]]) -> None:
    """Run the stack output's tunnel command, with a free local port and the harness's key and pinned
    host key: everything after `-L` up to the destination is what the output says."""
    tunnel = live.plan.outputs["monitoring"][ui]["ssh_tunnel"]
    m = re.fullmatch(r"ssh -N -L (\d+):(127\.0\.0\.1:\d+) root@([\d.]+)", tunnel)
    assert m, tunnel
    remote, host = m.group(2), m.group(3)
    known_hosts = live.tmp / "known_hosts"
    known_hosts.write_text(f"{host} {host_keys(live.plan.records)['controller'][1]}\n")
    port = free_port()
    key = str(live.cluster.private_key_path)
    argv = ["ssh", *PINNED_SSH_OPTIONS, "-o", f"UserKnownHostsFile={known_hosts}", "-i", key,
            "-N", "-L", f"127.0.0.1:{port}:{remote}", f"root@{host}"]  # fmt: skip
    stack.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=CLEAN_ENV, start_new_session=True))
    live.ports[ui] = port

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    eventually(f"the {ui} tunnel", answers, 30)


def start_stand_ins(cluster: Cluster) -> dict[str, str]:
    """Serve each GPU node's static metrics on its management address at dcgm-exporter's port; returns
    {node: pid} so they can be stopped by pid."""
    pids = {}
    for node, fixture in STAND_IN.items():
        address = cluster[node].address
        cluster[node].put_file("/srv/dcgm-stand-in/metrics", (FIXTURES / fixture).read_text())
        command = (
            f"setsid python3 -m http.server --bind {address} --directory /srv/dcgm-stand-in {DCGM_EXPORTER_PORT} "
            "</dev/null >/dev/null 2>&1 & echo $!"
        )
        pids[node] = cluster[node].ssh(command).stdout.strip()
    return pids


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("monitoring")
    with Cluster(
        len(NAMES),
        names=NAMES,
        fake_gpus={n: 2 for n in NAMES[1:]},
        disks={"controller": {"disk/by-id/virtio-hs-state": 256}},
    ) as cluster:
        keys = run_plan(live_stack(cluster, tmp, count=3))  # every node's host key, gpu-03 included
        give_nodes_their_host_keys(cluster, keys.records)
        plan = run_plan(live_stack(cluster, tmp, count=2))
        webhook = Webhook(cluster.host_address)
        threading.Thread(target=webhook.serve_forever, daemon=True).start()
        tunnels: list[subprocess.Popen[bytes]] = []
        stand_ins: dict[str, str] = {}
        try:
            live = Live(cluster, tmp, plan, webhook)
            started = time.monotonic()
            replay(plan.records, live.ssh)
            print(f"replayed the plan in {time.monotonic() - started:.1f}s")
            stand_ins = start_stand_ins(cluster)
            for ui in ("prometheus", "alertmanager"):
                open_tunnel(live, ui, tunnels)
            yield live
        finally:
            for proc in tunnels:
                proc.terminate()
                proc.wait(timeout=10)
            for node, pid in stand_ins.items():
                cluster[node].ssh(f"kill {shlex.quote(pid)}", check=False)
            webhook.shutdown()
            webhook.server_close()


def healthy_targets(live: Live) -> dict[str, set[str]] | None:
    """{job: nodes whose target is up}, once every target Prometheus knows is up."""
    targets = live.api("prometheus", "/api/v1/targets")["data"]["activeTargets"]
    if not targets or any(t["health"] != "up" for t in targets):
        return None
    up: dict[str, set[str]] = {}
    for t in targets:
        up.setdefault(t["labels"]["job"], set()).add(t["labels"].get("node", t["labels"]["instance"]))
    return up


def test_prometheus_sees_every_target_up(live: Live) -> None:
    up = eventually("every target up", lambda: healthy_targets(live))
    assert up["node"] == {"controller", "gpu-01", "gpu-02"}, up
    assert up["dcgm"] == {"gpu-01", "gpu-02"}, up
    assert set(up) == {"prometheus", "alertmanager", "node", "dcgm"}, up
    # its data is on the controller's state volume
    assert "wal" in live.on("controller", "ls /var/lib/hyperscaler/state/prometheus").split()


def test_the_slurm_collector_shows_the_nodes_and_a_running_job(live: Live) -> None:
    def states() -> dict[str, str]:
        return {r["metric"]["slurm_node"]: r["metric"]["state"] for r in live.query("slurm_node_state == 1")}

    assert eventually("SLURM nodes in Prometheus", lambda: set(states()) == {"gpu-01", "gpu-02"} and states())
    job = live.on("controller", "sbatch --parsable -p gpu -w gpu-01 --gres=gpu:1 -J probe --wrap 'sleep 120'").strip()
    try:
        running = eventually(
            "a running job in Prometheus",
            lambda: live.query('slurm_jobs{partition="gpu",state="running"} > 0'),
            diagnose=lambda: live.on("controller", "cat /var/lib/prometheus/node-exporter/slurm.prom; squeue"),
        )
        assert running[0]["value"][1] == "1"
        allocated = eventually(
            "gpu-01's GPU allocated", lambda: live.query('slurm_node_gpus_allocated{slurm_node="gpu-01"} == 1')
        )
        assert allocated
        total = {r["metric"]["slurm_node"]: r["value"][1] for r in live.query("slurm_node_gpus")}
        assert total == {"gpu-01": "2", "gpu-02": "2"}
        assert states()["gpu-01"] == "mixed"
        # what the collector wrote is valid exposition format to Prometheus's own linter
        for name in ("slurm.prom", "hyperscaler-canary.prom"):
            text = live.on("controller", f"cat /var/lib/prometheus/node-exporter/{name}")
            lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
            assert lint.returncode == 0, f"{name}:\n{text}\n{lint.stdout}{lint.stderr}"
    finally:
        live.on("controller", f"scancel {job}")


def test_the_canary_recorded_its_success(live: Live) -> None:
    result = eventually("the canary's metric", lambda: live.query("hyperscaler_canary_success"))
    assert [r["value"][1] for r in result] == ["1"]


def test_the_gpu_alerts_fire_from_the_stand_in_exporter(live: Live) -> None:
    expected = {"GpuXidError": "0", "GpuTooHot": "0", "GpuEccErrors": "1"}  # alert -> gpu on gpu-01
    for name, gpu in expected.items():
        alerts = eventually(f"{name} in Alertmanager", functools.partial(live.alerts, name))
        assert [(a["node"], a["gpu"]) for a in alerts] == [("gpu-01", gpu)], alerts
    # gpu-02's stand-in reports healthy GPUs: none of its GPUs alerts
    firing = live.api("prometheus", "/api/v1/alerts")["data"]["alerts"]
    assert not [a for a in firing if a["labels"].get("node") == "gpu-02" and a["labels"]["alertname"] in expected]


def test_a_stopped_node_exporter_raises_node_down_and_reaches_the_webhook(live: Live) -> None:
    live.on("gpu-02", "kill $(cat /run/prometheus/prometheus-node-exporter.pid)")
    alerts = eventually("NodeDown for gpu-02 in Alertmanager", lambda: live.alerts("NodeDown"))
    assert "gpu-02" in {a["node"] for a in alerts}, alerts

    def delivered() -> list[dict[str, Any]]:
        return [
            a
            for note in live.webhook.received
            for a in note["alerts"]
            if a["labels"]["alertname"] == "NodeDown" and a["labels"]["node"] == "gpu-02"
        ]

    notes = eventually("NodeDown delivered to the webhook", delivered)
    assert notes[0]["status"] == "firing" and notes[0]["annotations"]["runbook"] == "docs/monitoring.md#nodedown"
    # The program's own step brings it back, and the target comes back up.
    step = [r for r in live.plan.records if r.name.endswith("-monitoring-gpu-02-node-exporter")]
    replay(step, live.ssh)
    eventually("gpu-02 up again", lambda: live.query('up{job="node",node="gpu-02"} == 1'))


def test_a_second_run_changes_nothing(live: Live) -> None:
    files = (
        "find /etc/prometheus /etc/hyperscaler /etc/default -path '*prometheus*' -o -path '*hyperscaler*' "
        "| xargs -r sha256sum 2>/dev/null | sort"
    )
    before = (live.pids(), {n: live.on(n, files) for n in NAMES[:3]})
    assert all(pid.isdigit() for pid in before[0].values()), before[0]
    replay(monitoring_only(live.plan.records), live.ssh)
    assert (live.pids(), {n: live.on(n, files) for n in NAMES[:3]}) == before


def test_adding_a_node_touches_only_it_and_the_controller(live: Live) -> None:
    step = live.tmp / "grown"
    step.mkdir()
    grown = run_plan(live_stack(live.cluster, step, count=3))
    prometheus_pid = live.on("controller", "pgrep -x prometheus")
    change = replay_change(monitoring_only(live.plan.records), monitoring_only(grown.records), live.ssh)
    where = {(live.cluster.node_at(r.host).name, r.name.removeprefix("mon-monitoring-")) for r in change.ran}
    assert where == {
        ("gpu-03", "gpu-03-node-exporter"),
        ("controller", "controller-targets-node-gpu-03"),
        ("controller", "controller-targets-dcgm-gpu-03"),
        ("gpu-03", "gpu-03-etc-hyperscaler-dcgm-exporter-counters-csv"),
    }, where
    assert not change.deleted
    eventually("gpu-03 scraped", lambda: live.query('up{job="node",node="gpu-03"} == 1'))
    assert live.on("controller", "pgrep -x prometheus") == prometheus_pid, "Prometheus restarted"
    live.plan = grown
