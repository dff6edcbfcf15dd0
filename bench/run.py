"""Benchmarks: how long an offline plan takes and how much memory it needs, against targets.

Run with `make bench`. Each case runs in a fresh process (set_mocks is process-global) and reports wall
time and peak RSS; a case over its target exits non-zero. Targets are for this project's 2-core machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR bench"


def large_stack(compute_nodes: int) -> dict[str, object]:
    """A multi-host cluster with `compute_nodes` small CPU VMs spread over hosts of 64 CPUs each."""
    per_host = 30
    hosts = (compute_nodes + per_host - 1) // per_host + 1
    return {
        "name": "bench",
        "hosts": [
            {
                "name": f"hv{i}",
                "uri": f"qemu+ssh://root@hv{i}/system",
                "cpu": {"sockets": 2, "cores_per_socket": 16, "threads_per_core": 2},
                "memory_mib": 262144,
                "reserve": {"cpus": "0-1,32-33", "memory_mib": 16384},
            }
            for i in range(hosts)
        ],
        "networks": {
            "management": {"mode": "bridge", "bridge": "br0", "cidr": "10.80.0.0/20"},
            "interconnect": {"mode": "bridge", "bridge": "br1", "cidr": "10.81.0.0/20"},
        },
        "ssh": {"public_keys": [KEY]},
        "controller": {"host": "hv0", "vcpus": 8, "memory_mib": 16384},
        "storage": {"host": "hv0", "count": 2, "vcpus": 4, "memory_mib": 8192},
        "compute": [
            {
                "name": f"c{i}",
                "count": min(per_host, compute_nodes - i * per_host),
                "host": f"hv{i + 1}",
                "vcpus": 2,
                "memory_mib": 4096,
                "address_offset": 100 + i * per_host,
            }
            for i in range(hosts - 1)
        ],
    }


CASES = {  # name -> (stack file or generated stack, target seconds, target peak RSS MiB)
    "plan dev": ("Pulumi.dev.yaml", 10.0, 400),
    "plan cluster": ("Pulumi.cluster.yaml", 15.0, 500),
    "plan 120 compute nodes": (large_stack(120), 60.0, 1200),
}

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from hyperscaler.plan import run_plan
start = time.perf_counter()
result = run_plan(Path({path!r}))
print(json.dumps({{"seconds": time.perf_counter() - start, "resources": len(result.records),
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_case(stack: object) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(stack, str):
            path = ROOT / stack
        else:
            path = Path(tmp) / "Pulumi.bench.yaml"
            path.write_text(yaml.safe_dump({"config": {"hyperscaler:cluster": stack}}))
        proc = subprocess.run(
            [sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))],
            capture_output=True,
            text=True,
            check=True,
        )
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    failed = 0
    print(f"{'case':28} {'resources':>9} {'seconds':>8} {'target':>7} {'RSS MiB':>8} {'target':>7}")
    for name, (stack, max_s, max_mib) in CASES.items():
        r = run_case(stack)
        ok = r["seconds"] <= max_s and r["rss_mib"] <= max_mib
        failed += not ok
        print(
            f"{name:28} {int(r['resources']):9d} {r['seconds']:8.1f} {max_s:7.0f} {r['rss_mib']:8.0f} "
            f"{max_mib:7d} {'ok' if ok else 'OVER TARGET'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
