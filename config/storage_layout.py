"""Where each part of the shared file system lives, derived from the spec: pure and deterministic.

BeeGFS numeric ids (docs/storage.md): ids are unique within a service class and never change once data
carries them, so they come from positions that only ever grow. A storage node's index gives its meta and
storage node ids; its data volume number gives the target: target id = node index * 100 + volume number
(the convention BeeGFS's own setup tools document). Adding a storage node or a data volume adds ids and
renumbers none; the management service is node 1 of its class.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.models import ClusterSpec
from config.topology import NodePlan, Role

MGMTD_ON_CONTROLLER = "controller"
TARGETS_PER_NODE = 99  # target ids node*100 + 1..99


@dataclass(frozen=True)
class StorageTarget:
    node: str
    index: int  # the node's 1-based position among storage nodes
    volume: int  # 1-based data volume number (its suffix is data-<volume>)
    size_gib: int

    @property
    def target_id(self) -> int:
        return self.index * 100 + self.volume

    @property
    def reference(self) -> str:
        """How a stack file names it, e.g. storage-01:2."""
        return f"{self.node}:{self.volume}"


def storage_nodes(nodes: list[NodePlan]) -> list[NodePlan]:
    return [n for n in nodes if n.role is Role.STORAGE]


def storage_targets(nodes: list[NodePlan]) -> list[StorageTarget]:
    return [
        StorageTarget(n.name, n.index, int(v.suffix.removeprefix("data-")), v.size_gib)
        for n in storage_nodes(nodes)
        for v in n.volumes
        if v.suffix.startswith("data-")
    ]


def mgmtd_node(spec: ClusterSpec, nodes: list[NodePlan]) -> NodePlan | None:
    """The node that runs BeeGFS's management service; None when the stack names no such node."""
    if spec.storage is None:
        return None
    wanted = spec.storage.beegfs.mgmtd
    for node in nodes:
        if (wanted == MGMTD_ON_CONTROLLER and node.role is Role.CONTROLLER) or (
            node.name == wanted and node.role in (Role.CONTROLLER, Role.STORAGE)
        ):
            return node
    return None


def uses(spec: ClusterSpec, backend: str) -> bool:
    return spec.storage is not None and spec.storage.count > 0 and spec.storage.backend == backend
