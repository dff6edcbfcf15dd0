"""pytest fixtures on top of the harness.

Use them from a conftest.py with `pytest_plugins = ["tests.integration.harness.fixtures"]`, or import
the names into a test module. `cluster_fixture()` makes more, e.g.
`gpu_cluster = cluster_fixture(4, names=[...])`; a fixture's name is the name it is assigned to.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from ._util import require_root, require_tools
from .nodes import NODE_TOOLS, Cluster
from .rootfs import ensure_rootfs
from .slurmctld_check import CHECK_TOOLS

Scope = Literal["session", "package", "module", "class", "function"]


def cluster_fixture(
    n_nodes: int = 3, *, names: Sequence[str] | None = None, scope: Scope = "module", **cluster_kwargs: Any
) -> Any:
    """A pytest fixture yielding a started Cluster; teardown (and its leftover check) runs after use."""

    @pytest.fixture(scope=scope)
    def _cluster() -> Iterator[Cluster]:
        with Cluster(n_nodes, names=names, **cluster_kwargs) as cluster:
            yield cluster

    return _cluster


@pytest.fixture(scope="session")
def harness_preflight() -> None:
    """Fails (never skips) when the machine cannot run the harness."""
    require_root()
    require_tools([*NODE_TOOLS, *CHECK_TOOLS])


@pytest.fixture(scope="session")
def harness_rootfs(harness_preflight: None) -> Path:
    return ensure_rootfs()


# Three bare nodes (controller candidate node1, nodes node2..3). The harness does not configure SLURM.
slurm_cluster = cluster_fixture(3, names=("node1", "node2", "node3"))
