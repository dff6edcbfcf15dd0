"""Semantic checks of the containers section: settings that would do nothing, the registry on a port the
controller already uses, software whose only source is the image, and monitoring containers without Docker."""

from __future__ import annotations

from collections.abc import Iterator

from config.findings import Finding, Severity
from config.models import ClusterSpec, Containers
from config.monitoring_facts import CONTROLLER_PORTS
from config.topology import NodePlan


def container_settings_used(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    c = spec.containers
    if not c.enabled and c != Containers():
        yield Finding(
            "containers.enabled",
            "containers are off, so the other containers settings would do nothing",
            "set containers.enabled: true, or remove the other containers settings",
        )


def registry_port_free(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    c = spec.containers
    if not (c.enabled and c.registry.enabled):
        return
    taken = set(CONTROLLER_PORTS)
    if spec.monitoring.enabled:
        taken.add(spec.monitoring.grafana.port)
    if c.registry.port in taken:
        yield Finding(
            "containers.registry.port",
            f"port {c.registry.port} is already used on the controller",
            f"pick another port; these are taken: {', '.join(map(str, sorted(taken)))}",
        )


def software_from_image(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    """Enroot, Pyxis and Apptainer have no Debian 12 package: without a repository the image must carry them."""
    c = spec.containers
    if not c.enabled:
        return
    for name, section, what in (
        ("enroot", c.enroot, "enroot and the Pyxis plugin"),
        ("apptainer", c.apptainer, "apptainer"),
    ):
        if section.enabled and section.repository is None:
            yield Finding(
                f"containers.{name}.repository",
                f"no repository is set, so each compute node's image must carry {what}; "
                "`pulumi up` stops on a node without them",
                f"set containers.{name}.repository to a site apt repository, build images with {what}, "
                f"or set containers.{name}.enabled: false",
                Severity.WARNING,
            )
    if c.apptainer.enabled and (spec.storage is None or not spec.storage.count):
        yield Finding(
            "containers.apptainer.sif_dir",
            "there is no shared storage, so SIF images built on one node are not seen by the others",
            "add storage nodes (storage.count) or copy SIF files to each node yourself",
            Severity.WARNING,
        )


def monitoring_containers(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    if spec.monitoring.enabled and not spec.containers.enabled:
        yield Finding(
            "containers.enabled",
            "Grafana and the DCGM exporter run as containers: with containers off they do not run "
            "(Prometheus and Alertmanager do)",
            "set containers.enabled: true to run them",
            Severity.WARNING,
        )


CONTAINER_CHECKS = (container_settings_used, registry_port_free, software_from_image, monitoring_containers)
