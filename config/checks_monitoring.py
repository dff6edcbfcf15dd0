"""Semantic checks of the monitoring section: settings that would do nothing, a receiver without its
settings, Prometheus data that would not fit on the state volume, Grafana on a port already taken."""

from __future__ import annotations

from collections.abc import Iterator

from config.findings import Finding
from config.models import ClusterSpec, Monitoring
from config.monitoring_facts import CONTROLLER_PORTS
from config.topology import NodePlan


def monitoring_settings_used(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    mon = spec.monitoring
    if not mon.enabled and mon != Monitoring():
        yield Finding(
            "monitoring.enabled",
            "monitoring is off, so the other monitoring settings would do nothing",
            "set monitoring.enabled: true, or remove the other monitoring settings",
        )


def alert_receiver(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    alerts = spec.monitoring.alerts
    chosen = alerts.receiver
    for kind in ("email", "webhook"):
        configured = getattr(alerts, kind) is not None
        if chosen == kind and not configured:
            yield Finding(
                f"monitoring.alerts.{kind}",
                f"receiver is {kind}, but monitoring.alerts.{kind} is not set",
                "add it (docs/configuration.md lists its fields), or choose receiver: none",
            )
        if chosen != kind and configured:
            yield Finding(
                f"monitoring.alerts.{kind}",
                f"the {kind} settings would do nothing: receiver is {chosen}",
                f"set monitoring.alerts.receiver: {kind}, or remove monitoring.alerts.{kind}",
            )


def prometheus_fits(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    size = spec.monitoring.retention_size_gib
    state = spec.controller.state_disk_gib
    if size is not None and size >= state:
        yield Finding(
            "monitoring.retention_size_gib",
            f"Prometheus may use {size} GiB, but the controller's state volume holds only {state} GiB, "
            "shared with SLURM's state and the accounting database",
            f"use less than {state} GiB, or grow controller.state_disk_gib",
        )


def grafana_port_free(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    port = spec.monitoring.grafana.port
    if port in CONTROLLER_PORTS:
        yield Finding(
            "monitoring.grafana.port",
            f"port {port} is already used on the controller",
            f"pick another port; these are taken: {', '.join(map(str, CONTROLLER_PORTS))}",
        )


MONITORING_CHECKS = (monitoring_settings_used, alert_receiver, prometheus_fits, grafana_port_free)
