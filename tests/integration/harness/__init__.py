"""Integration-test harness: cached rootfs, namespace "nodes" reachable over SSH, slurm.conf validator.

    with Cluster(3) as cluster:                       # node1..node3, root SSH with a generated key
        cluster["node1"].ssh("hostname").stdout        # 'node1\n'
        cluster["node2"].put_file("/etc/x", "data")    # via SSH, like a real provisioner
        cluster.private_key_path, cluster.nodes[0].address

    check_slurm_conf(text, {"gres.conf": ...}).ok     # boots a real slurmctld in throwaway namespaces

    Cluster(2, names=["ctl", "gpu-01"], fake_gpus={"gpu-01": 1}, fake_nvidia={"gpu-01": "0x233010DE"})
                                                      # gpu-01 gets /dev/nvidia0 and, with fake_nvidia,
                                                      # stand-ins for the NVIDIA driver (fake_nvidia.py)

Fixtures for conftest/test modules live in `fixtures` (cluster_fixture, slurm_cluster, harness_rootfs).
Needs root; missing tools raise HarnessError so tests fail instead of skipping.
"""

from ._util import HarnessError, require_root, require_tools
from .nodes import Cluster, Node, NodeCommandError, cleanup_stale
from .rootfs import ensure_rootfs
from .slurmctld_check import Result, check_slurm_conf

__all__ = [
    "Cluster",
    "HarnessError",
    "Node",
    "NodeCommandError",
    "Result",
    "check_slurm_conf",
    "cleanup_stale",
    "ensure_rootfs",
    "require_root",
    "require_tools",
]
