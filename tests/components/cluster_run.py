"""The whole program under Pulumi's mocks, for the component tests: every resource it registers."""

from __future__ import annotations

from collections.abc import Callable

import pulumi

from components.cluster import HpcCluster, HpcClusterArgs
from config.models import ClusterSpec
from hyperscaler import mocks
from hyperscaler.mocks import Registration

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXRlc3Qta2V5\n-----END OPENSSH PRIVATE KEY-----"


def run_cluster(
    spec: ClusterSpec,
    receiver_secret: str | None = None,
    inspect: Callable[[HpcCluster], None] | None = None,
) -> dict[str, Registration]:
    """Every registration of HpcCluster(spec), by name; `inspect` sees the component as it is built."""
    monitor = mocks.install(project="hyperscaler", stack="test")

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        secret = pulumi.Output.secret(receiver_secret) if receiver_secret else None
        cluster = HpcCluster(
            spec.name, HpcClusterArgs(spec, pulumi.Output.secret(PRIVATE_KEY), alert_receiver_secret=secret)
        )
        if inspect is not None:
            inspect(cluster)
        return pulumi.Output.all(*(n.domain_id for n in cluster.nodes.values()))

    program()
    return {r.name: r for r in monitor.records}
