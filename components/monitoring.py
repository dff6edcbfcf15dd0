"""Monitoring: node-exporter on every node; Prometheus, Alertmanager and the SLURM metrics collector on the
controller; Grafana's files and the DCGM exporter's counters, ready for their containers (render/grafana.py).

Scrape targets are one file per node on the controller (file_sd): adding a node creates its exporter step
and its target file, and changes no other Command. A node that leaves takes its target file with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command.remote as remote
import pulumi_random as random

from components.identity import token, with_aliases
from components.node import as_secret
from components.remote import NodeAccess, push_file, run_script
from config.models import ClusterSpec
from config.monitoring_facts import ALERTMANAGER_PORT, NODE_EXPORTER_PORT, PROMETHEUS_PORT, TEXTFILE_DIR
from config.topology import NodePlan
from render.common import RenderedFile, content_hash
from render.grafana import admin_password_file, dcgm_counters_file, grafana_endpoint, grafana_files
from render.monitoring import (
    ALERTMANAGER_DATA,
    ALERTMANAGER_YML,
    DCGM_JOB,
    NODE_JOB,
    PROMETHEUS_DATA,
    PROMETHEUS_YML,
    RECEIVER_SECRET_FILE,
    RULES_DIR,
    RULES_FILE,
    SLURM_METRICS,
    TARGETS_DIR,
    alertmanager_args,
    dcgm_targets,
    endpoints,
    node_exporter_args,
    node_targets,
    prometheus_args,
    receiver_needs_secret,
    receiver_secret_file,
    render_alertmanager_yml,
    render_prometheus_yml,
    render_rules,
)
from render.remote import render_script
from render.slurm import controller
from render.volumes import STATE_MOUNT

GRAFANA_PASSWORD_LENGTH = 32


@dataclass(frozen=True)
class MonitoringArgs:
    spec: ClusterSpec
    nodes: list[NodePlan]
    access: dict[str, NodeAccess]  # each waits for its node's packages and mounted volumes (state volume)
    receiver_secret: pulumi.Input[str] | None = None  # the alert receiver's password or token (a secret)


def _slug(path: str) -> str:
    return path.strip("/").replace("/", "-").replace(".", "-")


class Monitoring(pulumi.ComponentResource):
    endpoints: dict[str, dict[str, str]]  # name -> {url, ssh_tunnel}: what runs, reached through SSH
    grafana_admin_password: pulumi.Output[str]  # a secret
    grafana_files: list[remote.Command]  # what the Grafana container mounts, pushed to the controller
    dcgm_files: dict[str, remote.Command]  # GPU node -> its DCGM exporter's counters file

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("Monitoring"), name, None, with_aliases("Monitoring", opts))
        spec, nodes = args.spec, args.nodes
        ctl = controller(nodes)
        on_ctl = args.access[ctl.name]

        def push(
            slug: str,
            file: RenderedFile,
            node: str = ctl.name,
            content: pulumi.Input[str] | None = None,
            depends_on: Sequence[pulumi.Resource] = (),
            removable: bool = False,
        ) -> remote.Command:
            return push_file(
                f"{name}-{node}-{slug}", file, args.access[node], self, content, depends_on, removable=removable
            )

        exporters = {}
        for node in nodes:
            script = render_script(
                "node-exporter",
                {
                    "DAEMON_ARGS": node_exporter_args(node),
                    "ADDRESS": node.mgmt_ip,
                    "PORT": NODE_EXPORTER_PORT,
                    "TEXTFILE_DIR": TEXTFILE_DIR,
                },
            )
            exporters[node.name] = run_script(
                f"{name}-{node.name}-node-exporter", script, [], args.access[node.name], self
            )

        # The controller's own file per node and job; each appears once the node's exporter answers.
        for node in nodes:
            push(
                f"targets-{NODE_JOB}-{node.name}", node_targets(node), depends_on=[exporters[node.name]], removable=True
            )
            dcgm = dcgm_targets(node)
            if dcgm is not None:
                push(f"targets-{DCGM_JOB}-{node.name}", dcgm, removable=True)

        config = RenderedFile(PROMETHEUS_YML, render_prometheus_yml(spec))
        rules = RenderedFile(RULES_FILE, render_rules(spec))
        prometheus_files = [push(_slug(f.path), f) for f in (config, rules)]
        run_script(
            f"{name}-{ctl.name}-prometheus",
            render_script(
                "prometheus",
                {
                    "DAEMON_ARGS": prometheus_args(spec),
                    "CONFIG": PROMETHEUS_YML,
                    "RULES_DIR": RULES_DIR,
                    "TARGETS_DIR": TARGETS_DIR,
                    "JOBS": f"{NODE_JOB} {DCGM_JOB}",
                    "DATA_DIR": PROMETHEUS_DATA,
                    "STATE_MOUNT": STATE_MOUNT,
                    "PORT": PROMETHEUS_PORT,
                },
            ),
            [content_hash(config.content), content_hash(rules.content)],
            on_ctl,
            self,
            prometheus_files,
        )

        am_config = RenderedFile(ALERTMANAGER_YML, render_alertmanager_yml(spec))
        am_files = [push(_slug(am_config.path), am_config)]
        am_triggers: list[pulumi.Input[str]] = [content_hash(am_config.content)]
        secret_path = ""
        if receiver_needs_secret(spec):
            if args.receiver_secret is None:  # config.load refuses such a stack before anything is declared
                raise ValueError("the alert receiver needs hyperscaler:alertReceiverSecret")
            secret = as_secret(args.receiver_secret)
            am_files.append(push(_slug(RECEIVER_SECRET_FILE), receiver_secret_file(), content=secret))
            am_triggers.append(pulumi.Output.secret(secret.apply(content_hash)))
            secret_path = RECEIVER_SECRET_FILE
        run_script(
            f"{name}-{ctl.name}-alertmanager",
            render_script(
                "alertmanager",
                {
                    "DAEMON_ARGS": alertmanager_args(),
                    "CONFIG": ALERTMANAGER_YML,
                    "SECRET_FILE": secret_path,
                    "DATA_DIR": ALERTMANAGER_DATA,
                    "STATE_MOUNT": STATE_MOUNT,
                    "PORT": ALERTMANAGER_PORT,
                },
            ),
            am_triggers,
            on_ctl,
            self,
            am_files,
        )

        run_script(
            f"{name}-{ctl.name}-slurm-metrics",
            render_script(
                "slurm-metrics", {"METRICS_FILE": SLURM_METRICS, "INTERVAL": spec.monitoring.scrape_interval_s}
            ),
            [],
            on_ctl,
            self,
            args=("start",),
        )

        # Grafana's container (issue 11) mounts these; its admin password is generated once and kept in state.
        password = random.RandomPassword(
            f"{name}-grafana-admin-password",
            length=GRAFANA_PASSWORD_LENGTH,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.grafana_admin_password = as_secret(password.result)
        self.grafana_files = [push(_slug(f.path), f) for f in grafana_files(spec)]
        self.grafana_files.append(
            push(_slug(admin_password_file().path), admin_password_file(), content=self.grafana_admin_password)
        )
        counters = dcgm_counters_file()
        self.dcgm_files = {n.name: push(_slug(counters.path), counters, node=n.name) for n in nodes if n.gpus}

        self.endpoints = {key: e.as_output() for key, e in endpoints(spec, ctl).items()}
        if spec.containers.enabled:  # Grafana runs as a container (components/containers.py)
            self.endpoints["grafana"] = grafana_endpoint(spec, ctl).as_output()
        self.register_outputs({"endpoints": self.endpoints})
